package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
)

// Hooks for the fixture runner's fleet (host/fixture, t.fleet): virtual
// instances, each an Engine, that record their connections in a
// broker.Fleet through the code a real instance runs (lease.go), but with
// no lease to renew and no background loop: the fixture decides when an
// instance dies and which survivor runs on_close for its connections
// (orphans.go), synchronously. Nothing else calls them.

// Simulate makes e record each authorised connection in f under instance
// id, record it again when its channel data changes, and delete the record
// once its on_close ran, as an instance of a fleet does; it starts no
// renewal or claim loop. ins are the integrations e serves. Call it before
// e opens any session.
func Simulate(e *engine.Engine, f broker.Fleet, id string, ins []*engine.Integration, log *slog.Logger) *Leases {
	l := &Leases{
		engine: e, fleet: f, ins: make(map[string]*engine.Integration, len(ins)), log: log,
		ttl: time.Hour, every: time.Hour, timeout: time.Minute, pause: &testPause{},
		id: id, renewed: true,
		recs: make(map[string]*leaseConn), gone: make(map[string]string), pending: make(map[string]*leaseConn),
		stop: make(chan struct{}),
	}
	for _, in := range ins {
		l.ins[in.Name] = in
	}
	e.SetFleet(l)
	return l
}

// CleanOrphan runs on_close on l's engine, as the survivor that claimed
// instance dead, for connection ch recorded there as record (by Simulate on
// dead's engine), and deletes the record: exactly what a survivor does for
// each record (cleanOne). It reports whether the record is done with;
// false means the broker failed and a survivor would try again.
func (l *Leases) CleanOrphan(ctx context.Context, dead, ch string, record []byte) (bool, error) {
	if l == nil {
		return false, fmt.Errorf("CleanOrphan: the engine is not in a fleet (Simulate)")
	}
	var rec connRecord
	if err := json.Unmarshal(record, &rec); err != nil || rec.Channel != ch {
		return false, fmt.Errorf("CleanOrphan: the record of %s cannot be read: %v", ch, err)
	}
	in := l.ins[rec.Integration]
	if in == nil {
		return false, fmt.Errorf("CleanOrphan: %s is a connection of integration %q, which this engine does not serve", ch, rec.Integration)
	}
	return l.cleanOne(ctx, dead, ch, &rec, in), nil
}
