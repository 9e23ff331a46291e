// Package services is lastmile's northbound API: the gRPC services, their
// interceptors, and the HTTP side (REST via grpc-gateway, the OpenAPI
// document, health and metrics).
//
//	OSS / NOC / lmctl                       curl / browsers
//	      | gRPC :9090                            | HTTP :8080
//	      |                        grpc-gateway mux, /openapi.json,
//	      |                        /healthz, /readyz, /metrics
//	      |                                       | (dials gRPC on loopback)
//	 interceptors: metrics+logging -> bearer token -> permission table
//	      |
//	 DeviceService   TokenService   AccessService   (proto <-> domain)
//	      |               |               |
//	 dm/registry      dm/token        dm/access
//
// errors.go is the one place that maps domain errors to gRPC status codes;
// grpc-gateway maps those to HTTP statuses. permissions.go lists the
// permission every method needs, and a test fails when a method is missing.
package services
