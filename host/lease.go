package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/electric-socket/electric-socket/broker"
	"github.com/electric-socket/electric-socket/luabridge"
)

// on_close after a crash (SPEC 5.12).
//
// With a broker that has the Fleet capability (Redis), each instance runs
// under an id of its own, new at every start, and a lease it renews every
// [broker] lease_renew. It records each authorised connection in Redis under
// that id before the connection's authorisation response is sent (its
// channel view, identifier, key and channel data), records it again when a
// committed call changes its channel data, and deletes the record once its
// on_close ran. The lease lives orphan_timeout / 2 without renewal.
//
// When an instance dies (kill -9, a lost machine) its lease expires; the
// next survivor to look (every lease_renew) claims it atomically and runs
// on_close for each record through the engine, exactly as for a connection
// that closes (inside the broker update, broker messages published, side
// effects delivered), and deletes the record. A survivor sees the death
// within orphan_timeout / 2 + lease_renew, which leaves at least
// orphan_timeout / 4 for the on_close calls (8 at a time).
//
// Exactly once: the on_close of connection C is always the broker
// operation "close:C" (broker.WithOperation), wherever it runs: on the
// connection's own instance, on a survivor, or on a second survivor after
// the first died midway (its claim expires and another instance takes it
// over). The compare-and-set applies an operation id once, so a record
// whose on_close committed just before its cleaner died is found applied
// (broker.ErrApplied) and only deleted. A connection with no broker key
// has no entity to carry that record: its record is deleted before its
// on_close runs on a survivor, so it runs at most once.
//
// A Redis outage is not a death: an instance judges others' leases only
// after its own renewals have succeeded for a whole lease since it started
// or since its last failed renewal, so after an outage every live instance
// has renewed before anyone claims. When Redis comes back without its data,
// each instance records its live connections again. An instance whose
// lease was claimed anyway (it was paused longer than a lease) learns it at
// its next renewal: it closes its connections (1001; their on_close
// operations were run by the claimer or run now, once) and carries on under
// a new id. A restarted instance has a new id and never touches the records
// of live instances.
//
// On the owner, an on_close that could not commit because the broker was
// unavailable (or kept conflicting) keeps its record, and is run again every
// lease_renew until it commits; if the instance dies first, a survivor runs
// it.

// closeKeep is how long the record of an on_close operation is kept in the
// broker: longer than a survivor may take to retry it.
const closeKeep = 10 * time.Minute

// closeOp is the broker operation id of the on_close of channel id.
func closeOp(channel string) string { return "close:" + channel }

// cleanWorkers bounds how many on_close calls a survivor runs at once.
const cleanWorkers = 8

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
}

func recordOf(s *Session) []byte {
	r := connRecord{
		Integration: s.integration.Name, Channel: s.channel.ID, Path: s.channel.Path,
		RemoteAddr: s.channel.RemoteAddr, Query: s.channel.Query, QueryAll: s.channel.QueryAll, ChannelData: s.channelData,
	}
	if s.identity.HasID {
		r.Identifier = &s.identity.ID
	}
	if s.identity.HasKey {
		r.Key = &s.identity.Key
	}
	b, _ := json.Marshal(r)
	return b
}

// leases keeps this instance's lease and connection records, and cleans up
// after instances that died. A nil *leases (a broker without the Fleet
// capability) does nothing: every method is nil-safe.
//
// The session hooks (authorised, changed, closeContext, closed) are called
// from the session's goroutine; all methods may be called concurrently.
type leases struct {
	engine  *Engine
	fleet   broker.Fleet
	ins     map[string]*Integration
	log     *slog.Logger
	ttl     time.Duration // the lease's (and a claim's) time to live
	every   time.Duration // renewal and scan period
	timeout time.Duration // one broker call of the background loops
	pause   *testPause

	mu        sync.Mutex
	id        string                // the current lease
	judgeFrom time.Time             // others' leases are judged from then on
	renewed   bool                  // the last renewal succeeded
	recs      map[string]*leaseConn // live connections by channel id
	gone      map[string]string     // channel id -> lease: records still to delete
	pending   map[string]*leaseConn // closed, their on_close still to commit
	stopped   bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// leaseConn is one recorded connection.
type leaseConn struct {
	lease  string // the lease it is recorded under
	record []byte
	dirty  bool // to write again
	topic  broker.Topic
	hasKey bool
}

// newInstanceID is a lease id: unique across instances and restarts, and
// readable in logs.
func newInstanceID() string {
	var b [6]byte
	rand.Read(b[:])
	host, _ := os.Hostname()
	if i := strings.IndexByte(host, '.'); i > 0 {
		host = host[:i]
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// startLeases joins the fleet when b has the Fleet capability and starts
// renewing and watching; it returns nil, nil otherwise.
func startLeases(e *Engine, b broker.Broker, ins []*Integration, c BrokerConfig, log *slog.Logger) (*leases, error) {
	f, ok := b.(broker.Fleet)
	if !ok {
		return nil, nil
	}
	l := &leases{
		engine: e, fleet: f, ins: make(map[string]*Integration, len(ins)), log: log,
		ttl: c.OrphanTimeout / 2, every: c.LeaseRenew, timeout: max(c.LeaseRenew, 2*time.Second),
		pause: testPauseFromEnv(log),
		recs:  make(map[string]*leaseConn), gone: make(map[string]string), pending: make(map[string]*leaseConn),
		stop: make(chan struct{}),
	}
	if l.every <= 0 {
		l.every = c.OrphanTimeout / 6
	}
	for _, in := range ins {
		l.ins[in.Name] = in
	}
	l.id = newInstanceID()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if err := f.JoinFleet(ctx, l.id, l.ttl); err != nil {
		return nil, fmt.Errorf("broker: joining the fleet: %w", err)
	}
	l.judgeFrom, l.renewed = time.Now().Add(l.ttl), true
	log.Info("joined the fleet", "instance", l.id, "orphan_timeout", c.OrphanTimeout, "lease_renew", l.every)
	l.wg.Add(2)
	go l.renewLoop()
	go l.reapLoop()
	return l, nil
}

// ID returns the instance's current lease id ("" without leases).
func (l *leases) ID() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

// authorised records s, whose authorisation committed, before its response
// is sent. When the broker fails, the record is written later.
func (l *leases) authorised(s *Session) {
	if l == nil {
		return
	}
	l.mu.Lock()
	c := &leaseConn{lease: l.id, record: recordOf(s), topic: s.topic, hasKey: s.identity.HasKey}
	l.recs[s.channel.ID] = c
	l.mu.Unlock()
	l.put(c, s.channel.ID)
}

// changed records s again after a committed call changed its channel data.
func (l *leases) changed(s *Session) {
	if l == nil {
		return
	}
	l.mu.Lock()
	c := l.recs[s.channel.ID]
	if c != nil {
		c.record = recordOf(s)
	}
	l.mu.Unlock()
	if c != nil {
		l.put(c, s.channel.ID)
	}
}

// put writes c's record now; when that fails it is marked to be written by
// the renewal loop.
func (l *leases) put(c *leaseConn, channel string) {
	l.mu.Lock()
	lease, rec := c.lease, c.record
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := l.fleet.PutConns(ctx, lease, map[string][]byte{channel: rec})
	cancel()
	if err != nil {
		l.mu.Lock()
		c.dirty = true
		l.mu.Unlock()
		l.log.Warn("connection not recorded in the broker yet; retrying", "channel", channel, "err", err)
	}
}

// closeContext is the context s's on_close runs under: its operation id
// makes it apply once, wherever it runs.
func (l *leases) closeContext(ctx context.Context, s *Session) context.Context {
	if l == nil {
		return ctx
	}
	return broker.WithOperation(ctx, closeOp(s.channel.ID), closeKeep)
}

// closed is told the outcome of s's on_close: its record is deleted, or
// kept for another attempt when the broker failed.
func (l *leases) closed(s *Session, err error) {
	if l == nil {
		return
	}
	ch := s.channel.ID
	l.mu.Lock()
	c := l.recs[ch]
	delete(l.recs, ch)
	if c != nil && brokerCode(err) != "" {
		l.pending[ch] = c
		l.mu.Unlock()
		l.log.Warn("on_close could not commit; it will run again", "channel", ch, "err", err)
		return
	}
	l.mu.Unlock()
	if c != nil {
		l.forget(c, ch)
	}
}

// forget deletes c's record (the on_close of channel ch ran) and, when this
// instance still holds the lease it is recorded under, the record of its
// on_close operation, which nobody can run again. A failed deletion is
// retried by the renewal loop.
func (l *leases) forget(c *leaseConn, ch string) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	if _, err := l.fleet.DeleteConns(ctx, c.lease, ch); err != nil {
		l.mu.Lock()
		l.gone[ch] = c.lease
		l.mu.Unlock()
		return
	}
	l.mu.Lock()
	mine := c.lease == l.id && l.renewed
	l.mu.Unlock()
	if mine && c.hasKey {
		_ = l.fleet.ForgetOperation(ctx, c.topic, closeOp(ch)) // else it expires after closeKeep
	}
}

// renewLoop renews the lease every l.every and writes what could not be
// written before.
func (l *leases) renewLoop() {
	defer l.wg.Done()
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		l.renew()
		l.flush()
	}
}

func (l *leases) renew() {
	l.mu.Lock()
	id := l.id
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	recreated, err := l.fleet.RenewLease(ctx, id, l.ttl)
	cancel()
	switch {
	case errors.Is(err, broker.ErrLeaseLost):
		l.lost(id)
	case err != nil:
		l.mu.Lock()
		was := l.renewed
		l.renewed = false
		l.mu.Unlock()
		if was {
			l.log.Warn("cannot renew the lease; other instances' leases are not judged until renewals succeed again",
				"instance", id, "err", err)
		}
	default:
		l.mu.Lock()
		if !l.renewed {
			l.renewed = true
			l.judgeFrom = time.Now().Add(l.ttl)
			l.log.Info("lease renewed again", "instance", id)
		}
		if recreated {
			for _, c := range l.recs {
				c.dirty = true
			}
			l.log.Warn("the broker had lost this instance's lease (Redis restarted without its data): recording its connections again",
				"instance", id, "connections", len(l.recs))
		}
		l.mu.Unlock()
	}
}

// lost handles a lease claimed by another instance that took this one for
// dead: this instance closes its connections and carries on under a new id.
func (l *leases) lost(old string) {
	id := newInstanceID()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := l.fleet.JoinFleet(ctx, id, l.ttl)
	cancel()
	if err != nil {
		l.log.Error("lease lost, and joining again failed; retrying", "instance", old, "err", err)
		return
	}
	l.mu.Lock()
	if l.id != old {
		l.mu.Unlock()
		return
	}
	l.id, l.renewed, l.judgeFrom = id, true, time.Now().Add(l.ttl)
	n := len(l.recs)
	l.mu.Unlock()
	l.log.Error("this instance's lease was claimed by another instance, which took it for dead: "+
		"closing its connections (each on_close runs once, here or there) and continuing under a new id",
		"old", old, "instance", id, "connections", n)
	e := l.engine
	e.mu.Lock()
	list := make([]*Session, 0, len(e.sessions))
	for s := range e.sessions {
		list = append(list, s)
	}
	e.mu.Unlock()
	for _, s := range list {
		s.enqueue(event{kind: evShutdown})
	}
}

// flush writes the records marked dirty and deletes those still to delete.
func (l *leases) flush() {
	l.mu.Lock()
	puts := make(map[string]map[string][]byte) // lease -> channel -> record
	var written []*leaseConn
	for ch, c := range l.recs {
		if c.dirty {
			if puts[c.lease] == nil {
				puts[c.lease] = make(map[string][]byte)
			}
			puts[c.lease][ch] = c.record
			written = append(written, c)
			c.dirty = false
		}
	}
	dels := make(map[string][]string)
	for ch, lease := range l.gone {
		dels[lease] = append(dels[lease], ch)
	}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	for lease, recs := range puts {
		if err := l.fleet.PutConns(ctx, lease, recs); err != nil {
			l.mu.Lock()
			for _, c := range written {
				if c.lease == lease {
					c.dirty = true
				}
			}
			l.mu.Unlock()
		}
	}
	for lease, chs := range dels {
		if _, err := l.fleet.DeleteConns(ctx, lease, chs...); err == nil {
			l.mu.Lock()
			for _, ch := range chs {
				if l.gone[ch] == lease {
					delete(l.gone, ch)
				}
			}
			l.mu.Unlock()
		}
	}
}

// shutdown stops the loops once every session has closed: it writes what
// is left, tries the pending on_close calls once more, and leaves the
// fleet (the lease stays, expired, when records are left for a survivor).
func (l *leases) shutdown(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil
	}
	l.stopped = true
	l.mu.Unlock()
	close(l.stop)
	l.wg.Wait()
	l.flush()
	l.retryPending(ctx)
	l.mu.Lock()
	id, left := l.id, len(l.pending)+len(l.gone)+len(l.recs)
	l.mu.Unlock()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	if err := l.fleet.LeaveFleet(lctx, id); err != nil && !errors.Is(err, broker.ErrLeaseLost) {
		// Not a failed shutdown: the lease expires by itself, and a
		// survivor runs whatever is left under it.
		l.log.Warn("could not leave the fleet; the lease will expire", "instance", id, "err", err)
		return nil
	}
	if left > 0 {
		l.log.Warn("left the fleet with connections whose on_close did not commit: a surviving instance runs them",
			"instance", id, "connections", left)
	}
	return nil
}

// channel rebuilds the channel view of a record.
func (r *connRecord) channel() *luabridge.Channel {
	return &luabridge.Channel{ID: r.Channel, Integration: r.Integration, Path: r.Path, RemoteAddr: r.RemoteAddr, Query: r.Query, QueryAll: r.QueryAll}
}
