package services

import "github.com/lastmile-dm/lastmile/dm/token"

// permissions maps every gRPC method to the permission a token needs.
// TestEveryMethodHasAPermission fails when a method is missing.
var permissions = map[string]string{
	"/lastmile.device.v1.DeviceService/CreateDevice":         token.PermDevicesWrite,
	"/lastmile.device.v1.DeviceService/GetDevice":            token.PermDevicesRead,
	"/lastmile.device.v1.DeviceService/ListDevices":          token.PermDevicesRead,
	"/lastmile.device.v1.DeviceService/UpdateDevice":         token.PermDevicesWrite,
	"/lastmile.device.v1.DeviceService/DeleteDevice":         token.PermDevicesWrite,
	"/lastmile.device.v1.DeviceService/SetDeviceCredentials": token.PermDevicesWrite,
	"/lastmile.device.v1.DeviceService/DisconnectDevice":     token.PermDevicesWrite,

	"/lastmile.shadow.v1.ShadowService/GetShadow":        token.PermShadowsRead,
	"/lastmile.shadow.v1.ShadowService/ListNamedShadows": token.PermShadowsRead,
	"/lastmile.shadow.v1.ShadowService/QueryDevices":     token.PermShadowsRead,
	"/lastmile.shadow.v1.ShadowService/UpdateDesired":    token.PermShadowsWrite,
	"/lastmile.shadow.v1.ShadowService/DeleteShadow":     token.PermShadowsWrite,

	"/lastmile.config.v1.ConfigService/CreateProfile":    token.PermConfigWrite,
	"/lastmile.config.v1.ConfigService/GetProfile":       token.PermConfigRead,
	"/lastmile.config.v1.ConfigService/CreateVersion":    token.PermConfigWrite,
	"/lastmile.config.v1.ConfigService/ListVersions":     token.PermConfigRead,
	"/lastmile.config.v1.ConfigService/Assign":           token.PermConfigWrite,
	"/lastmile.config.v1.ConfigService/ListRollouts":     token.PermConfigRead,
	"/lastmile.config.v1.ConfigService/GetRolloutStatus": token.PermConfigRead,

	"/lastmile.access.v1.TokenService/CreateToken": token.PermTokensAdmin,
	"/lastmile.access.v1.TokenService/ListTokens":  token.PermTokensAdmin,
	"/lastmile.access.v1.TokenService/RevokeToken": token.PermTokensAdmin,

	"/lastmile.access.v1.AccessService/PutRole":                 token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/GetRole":                 token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/ListRoles":               token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/DeleteRole":              token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/CreateApplication":       token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/GetApplication":          token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/ListApplications":        token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/UpdateApplication":       token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/DeleteApplication":       token.PermAccessAdmin,
	"/lastmile.access.v1.AccessService/RotateApplicationSecret": token.PermAccessAdmin,

	"/lastmile.tunnel.v1.TunnelService/OpenTunnel":   token.PermTunnel,
	"/lastmile.tunnel.v1.TunnelService/ListTunnels":  token.PermTunnel,
	"/lastmile.tunnel.v1.TunnelService/CloseTunnel":  token.PermTunnel,
	"/lastmile.tunnel.v1.TunnelService/GetTunnelKey": token.PermTunnel,
	"/lastmile.tunnel.v1.TunnelService/Connect":      token.PermTunnel,

	"/lastmile.command.v1.CommandService/InvokeCommand": token.PermCommandsInvoke,

	"/lastmile.event.v1.EventService/Watch": token.PermEventsRead,

	"/lastmile.snmp.v1.SnmpService/Get":  token.PermSNMPRead,
	"/lastmile.snmp.v1.SnmpService/Walk": token.PermSNMPRead,
	"/lastmile.snmp.v1.SnmpService/Set":  token.PermSNMPWrite,
}
