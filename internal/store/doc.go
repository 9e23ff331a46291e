// Package store holds the storage engines behind lastmile's store
// interfaces. Each consumer (dm/registry, dm/access, dm/token, the broker's
// session persistence) defines the interface it needs; the engines here
// implement all of them and import the domain types, never the reverse:
//
//	dm/registry.Store  dm/access.Store  dm/token.Store  broker/persist.Store
//	        \               |                |               /
//	         +--------------+----------------+--------------+
//	         |                                              |
//	  store/embedded (Pebble, one node)        store/redis (go-redis v9, many nodes)
//
// store/storetest is the one contract suite both engines pass.
package store
