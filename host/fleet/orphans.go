package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/host/engine"
)

// Running on_close for connections whose instance cannot (lease.go): those
// of instances that died, and this instance's own whose on_close could not
// commit when they closed.

// orphanClose runs on_close for the connection of rec through the engine,
// as the operation close:<channel> (engine.RunOnClose says what it returns).
func (l *Leases) orphanClose(ctx context.Context, in *engine.Integration, rec *connRecord) error {
	ctx = broker.WithOperation(ctx, closeOp(rec.Channel), closeKeep)
	return l.engine.RunOnClose(ctx, in, rec.conn())
}

// reapLoop runs, every l.every, this instance's pending on_close calls,
// then the on_close calls of instances whose lease expired.
func (l *Leases) reapLoop() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-l.stop
		cancel()
	}()
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		l.retryPending(ctx)
		l.reap(ctx)
	}
}

// retryPending runs again the on_close calls of this instance's closed
// connections that could not commit.
func (l *Leases) retryPending(ctx context.Context) {
	l.mu.Lock()
	if len(l.pending) == 0 {
		l.mu.Unlock()
		return
	}
	recs := make(map[string][]byte, len(l.pending))
	conns := make(map[string]*leaseConn, len(l.pending))
	for ch, c := range l.pending {
		recs[ch], conns[ch] = c.record, c
	}
	l.mu.Unlock()
	ok, _ := l.runAll(ctx, "", recs, func(ch string, rec *connRecord, in *engine.Integration) bool {
		if err := l.orphanClose(ctx, in, rec); err != nil {
			return false
		}
		l.mu.Lock()
		delete(l.pending, ch)
		l.mu.Unlock()
		l.forget(conns[ch], ch)
		return true
	})
	if ok > 0 {
		l.log.Info("on_close committed for connections that closed while the broker failed", "connections", ok)
	}
}

// reap claims the expired leases of other instances, one at a time, and
// cleans each. It judges nothing until its own lease has been renewed for
// a whole lease (see lease.go: a Redis outage is not a death).
func (l *Leases) reap(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		me, judge := l.id, l.renewed && time.Now().After(l.judgeFrom)
		l.mu.Unlock()
		if !judge {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, l.timeout)
		dead, err := l.fleet.ClaimExpired(cctx, me, l.ttl)
		cancel()
		if err != nil || dead == "" {
			return
		}
		l.clean(ctx, dead, me)
	}
}

// clean runs on_close for every connection recorded under the lease of
// dead, which me claimed, deleting each record after its on_close, then
// ends the claim. While it runs, it renews the claim every l.every; when
// another instance took the claim over (this one was too slow), it stops.
func (l *Leases) clean(ctx context.Context, dead, me string) {
	l.log.Warn("claimed the lease of an instance that stopped renewing it: running on_close for its connections",
		"dead", dead, "instance", me)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var keepMu sync.Mutex
	lostClaim := false
	keeping := make(chan struct{})
	go func() {
		defer close(keeping)
		tick := time.NewTicker(l.every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, l.timeout)
			err := l.fleet.RenewClaim(rctx, dead, me, l.ttl)
			rcancel()
			if errors.Is(err, broker.ErrLeaseLost) {
				keepMu.Lock()
				lostClaim = true
				keepMu.Unlock()
				cancel()
				return
			}
		}
	}()
	defer func() { cancel(); <-keeping }()

	ran, failed := 0, 0
	for pass := 0; pass < 3 && failed == 0 && ctx.Err() == nil; pass++ {
		var cursor uint64
		for {
			recs, next, err := l.fleet.ScanConns(ctx, dead, cursor, 100)
			if err != nil {
				failed++
				break
			}
			ok, bad := l.runAll(ctx, dead, recs, func(ch string, rec *connRecord, in *engine.Integration) bool {
				l.pause.gate()
				done := l.cleanOne(ctx, dead, ch, rec, in)
				l.pause.ran(done, l.log)
				return done
			})
			ran, failed = ran+ok, failed+bad
			if cursor = next; cursor == 0 || ctx.Err() != nil {
				break
			}
		}
		if failed > 0 || ctx.Err() != nil {
			break
		}
		fctx, fcancel := context.WithTimeout(ctx, l.timeout)
		done, err := l.fleet.FinishClaim(fctx, dead, me, l.every)
		fcancel()
		if err == nil && done {
			l.log.Warn("ran on_close for every connection of an instance that died", "dead", dead, "connections", ran)
			return
		}
		// Records left: the scan can miss entries written meanwhile; look again.
	}
	keepMu.Lock()
	lost := lostClaim
	keepMu.Unlock()
	if lost {
		l.log.Warn("another instance took over the cleaning of a dead instance", "dead", dead, "connections_done_here", ran)
		return
	}
	fctx, fcancel := context.WithTimeout(context.Background(), l.timeout)
	_, _ = l.fleet.FinishClaim(fctx, dead, me, l.every) // retried after l.every, by whoever claims first
	fcancel()
	l.log.Warn("on_close could not run for every connection of a dead instance yet; retrying",
		"dead", dead, "done", ran, "failed", failed)
}

// cleanOne runs on_close for connection ch of dead and deletes its record;
// it reports whether the record is done with.
func (l *Leases) cleanOne(ctx context.Context, dead, ch string, rec *connRecord, in *engine.Integration) bool {
	if rec.Key == nil {
		// No entity carries the operation's record: take the record first,
		// so that on_close runs at most once.
		n, err := l.fleet.DeleteConns(ctx, dead, ch)
		if err != nil {
			return false
		}
		if n == 1 {
			_ = l.orphanClose(ctx, in, rec)
		}
		return true
	}
	if err := l.orphanClose(ctx, in, rec); err != nil {
		return false
	}
	// Deleted after on_close: when this instance dies in between, the next
	// cleaner finds the operation applied and only deletes the record.
	_, err := l.fleet.DeleteConns(ctx, dead, ch)
	return err == nil
}

// runAll decodes the records (recorded under lease) and calls run for each,
// cleanWorkers at a time; it counts the records run reported done and the
// others. A record that cannot be read is deleted (and logged); one of an
// integration this instance does not serve is left for an instance that
// serves it.
func (l *Leases) runAll(ctx context.Context, lease string, recs map[string][]byte, run func(ch string, rec *connRecord, in *engine.Integration) bool) (ok, failed int) {
	type job struct {
		ch  string
		rec *connRecord
		in  *engine.Integration
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < min(cleanWorkers, len(recs)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				done := ctx.Err() == nil && run(j.ch, j.rec, j.in)
				mu.Lock()
				if done {
					ok++
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	for ch, data := range recs {
		var rec connRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.Channel != ch {
			l.log.Error("deleting a connection record that cannot be read", "channel", ch, "record", string(data), "err", err)
			if lease != "" {
				l.fleet.DeleteConns(ctx, lease, ch)
			}
			continue
		}
		in := l.ins[rec.Integration]
		if in == nil {
			l.log.Warn("a connection record of an integration this instance does not serve is left for one that does",
				"channel", ch, "integration", rec.Integration)
			mu.Lock()
			failed++
			mu.Unlock()
			continue
		}
		jobs <- job{ch, &rec, in}
	}
	close(jobs)
	wg.Wait()
	return ok, failed
}
