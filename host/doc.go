// Package host assembles a server from its configuration: it loads the
// scripts, builds the broker, the sink, the engine (host/engine), the fleet
// (host/fleet), the WebSocket server (host/ws) and the admin listener
// (host/admin), reloads scripts when they change, and serves the [web]
// root.
package host
