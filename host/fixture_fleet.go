package host

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/electric-socket/electric-socket/broker"
)

// Hooks for the fixture runner's fleet (host/fixture, t.fleet): virtual
// instances, each an Engine, that record their connections in a
// broker.Fleet through the code a real instance runs (lease.go), but with
// no lease to renew and no background loop: the fixture decides when an
// instance dies and which survivor runs on_close for its connections
// (orphans.go), synchronously. Nothing else calls them.

// SimulateFleet makes e record each authorised connection in f under
// instance id, record it again when its channel data changes, and delete
// the record once its on_close ran, as an instance of a fleet does; it
// starts no renewal or claim loop. ins are the integrations e serves. Call
// it before e opens any session.
func (e *Engine) SimulateFleet(f broker.Fleet, id string, ins []*Integration) {
	l := &leases{
		engine: e, fleet: f, ins: make(map[string]*Integration, len(ins)), log: e.log,
		ttl: time.Hour, every: time.Hour, timeout: time.Minute, pause: &testPause{},
		id: id, renewed: true,
		recs: make(map[string]*leaseConn), gone: make(map[string]string), pending: make(map[string]*leaseConn),
		stop: make(chan struct{}),
	}
	for _, in := range ins {
		l.ins[in.Name] = in
	}
	e.leases = l
}

// CleanOrphan runs on_close on e, as the survivor that claimed instance
// dead, for connection ch recorded there as record (by SimulateFleet on
// dead's engine), and deletes the record: exactly what a survivor does for
// each record (leases.cleanOne). It reports whether the record is done
// with; false means the broker failed and a survivor would try again.
func (e *Engine) CleanOrphan(ctx context.Context, dead, ch string, record []byte) (bool, error) {
	if e.leases == nil {
		return false, fmt.Errorf("CleanOrphan: the engine is not in a fleet (SimulateFleet)")
	}
	var rec connRecord
	if err := json.Unmarshal(record, &rec); err != nil || rec.Channel != ch {
		return false, fmt.Errorf("CleanOrphan: the record of %s cannot be read: %v", ch, err)
	}
	in := e.leases.ins[rec.Integration]
	if in == nil {
		return false, fmt.Errorf("CleanOrphan: %s is a connection of integration %q, which this engine does not serve", ch, rec.Integration)
	}
	return e.leases.cleanOne(ctx, dead, ch, &rec, in), nil
}

// Receives reports whether a broker message env published on t reaches a
// session of e: one whose identifier is its target and that did not
// publish it (SPEC 5.4), as registry.deliver chooses them.
func (e *Engine) Receives(t broker.Topic, env broker.Envelope) bool {
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	if te := e.reg.topics[t]; te != nil {
		for s := range te.members[env.Target] {
			if s.channel.ID != env.Source {
				return true
			}
		}
	}
	return false
}
