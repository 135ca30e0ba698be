package fleet

import (
	"encoding/json"

	"github.com/electric-socket/electric-socket/host/engine"
	"github.com/electric-socket/electric-socket/luabridge"
)

// connRecord is what the broker keeps of an authorised connection, so that
// another instance can run its on_close.
type connRecord struct {
	Integration string              `json:"integration"`
	Channel     string              `json:"channel"`
	Path        string              `json:"path"`
	RemoteAddr  string              `json:"remote_addr"`
	Query       map[string]string   `json:"query,omitempty"`
	QueryAll    map[string][]string `json:"query_all,omitempty"`  // the parameters given more than once
	Identifier  *string             `json:"identifier,omitempty"` // nil: none
	Key         *string             `json:"key,omitempty"`        // nil: no broker key
	ChannelData json.RawMessage     `json:"channel_data"`
	Claims      json.RawMessage     `json:"claims,omitempty"` // the verified token's claims; on_close elsewhere sees channel.claims
}

func recordOf(c engine.Conn) []byte {
	ch := c.Channel
	r := connRecord{
		Integration: c.Integration, Channel: ch.ID, Path: ch.Path,
		RemoteAddr: ch.RemoteAddr, Query: ch.Query, QueryAll: ch.QueryAll, ChannelData: c.ChannelData,
		Claims: ch.Claims,
	}
	if c.Identity.HasID {
		r.Identifier = &c.Identity.ID
	}
	if c.Identity.HasKey {
		r.Key = &c.Identity.Key
	}
	b, _ := json.Marshal(r)
	return b
}

// conn rebuilds the connection of a record.
func (r *connRecord) conn() engine.Conn {
	c := engine.Conn{Integration: r.Integration, ChannelData: r.ChannelData,
		Channel: &luabridge.Channel{ID: r.Channel, Integration: r.Integration, Path: r.Path, RemoteAddr: r.RemoteAddr, Query: r.Query, QueryAll: r.QueryAll, Claims: r.Claims}}
	if r.Identifier != nil {
		c.Identity.ID, c.Identity.HasID = *r.Identifier, true
	}
	if r.Key != nil {
		c.Identity.Key, c.Identity.HasKey = *r.Key, true
	}
	return c
}
