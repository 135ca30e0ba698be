package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelDownAfter is the sentinels' down-after-milliseconds: a master
// that does not answer for this long is down for a sentinel, and once two
// agree they elect one of them, which promotes the replica (a few seconds
// in all).
const SentinelDownAfter = time.Second

// sentinelFailoverTimeout is the sentinels' failover-timeout.
const sentinelFailoverTimeout = 3 * time.Second

// SentinelMasterName is the name the sentinels monitor the master under.
const SentinelMasterName = "esmaster"

// Sentinel is a Redis Sentinel deployment for a test: a master, one
// replica and three sentinels (quorum 2), redis-server processes on free
// loopback ports, each in a temporary folder, with no persistence, killed
// when the test ends. Its methods fail the test they are given on errors:
// call them from the test's goroutine.
type Sentinel struct {
	// URL names the deployment as the redis broker accepts it:
	// "redis+sentinel://127.0.0.1:s1?master_name=esmaster&addr=127.0.0.1:s2&addr=127.0.0.1:s3".
	URL string
	// MasterName is the name the sentinels know the master by.
	MasterName string
	// Nodes are the data servers: Nodes[0] the master the deployment
	// started with, Nodes[1] its replica. Master and Replica say what they
	// are now.
	Nodes []*Server
	// Sentinels are the three sentinels.
	Sentinels []*Server

	sentinels []*redis.SentinelClient
	admins    []*redis.Client // of Nodes
}

// NewSentinel starts a master, its replica (in sync when this returns) and
// three sentinels that monitor the master, and returns once every
// sentinel knows the master, the replica and the two other sentinels. The
// test is skipped when there is no redis-server in PATH, or fails when
// CI=true.
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	began := time.Now()
	why := "no redis-server in PATH (a Redis Sentinel test starts its own servers; REDIS_URL cannot serve it)"
	s := &Sentinel{MasterName: SentinelMasterName, Nodes: []*Server{{}, {}}}
	launchAll(t, why, s.Nodes)
	for _, nd := range s.Nodes {
		a := adminClient(nd.Addr)
		t.Cleanup(func() { a.Close() })
		s.admins = append(s.admins, a)
	}
	master, replica := s.Nodes[0], s.Nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := s.admins[1].ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(master.port)).Err()
	cancel()
	if err != nil {
		t.Fatalf("redistest: REPLICAOF on %s: %v", replica.Addr, err)
	}
	waitUntil(t, topologyBound, "the replica syncs", func(ctx context.Context) error {
		return s.inSync(ctx, replica, master)
	})

	conf := strings.Join([]string{
		"sentinel resolve-hostnames no",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", s.MasterName, master.port),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.MasterName, SentinelDownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", s.MasterName, sentinelFailoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 1", s.MasterName),
		""}, "\n")
	for range 3 {
		sn := &Server{sentinel: true, dir: t.TempDir()}
		if err := os.WriteFile(filepath.Join(sn.dir, "sentinel.conf"), []byte(conf), 0o600); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	launchAll(t, why, s.Sentinels)
	var addrs []string
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr, DialTimeout: time.Second,
			ReadTimeout: 2 * time.Second, MaxRetries: -1, Protocol: 2})
		t.Cleanup(func() { c.Close() })
		s.sentinels = append(s.sentinels, c)
		addrs = append(addrs, sn.Addr)
	}
	waitUntil(t, topologyBound, "the sentinels know the master, the replica and each other", func(ctx context.Context) error {
		for i, c := range s.sentinels {
			m, err := c.Master(ctx, s.MasterName).Result()
			if err != nil {
				return fmt.Errorf("SENTINEL MASTER on %s: %w", addrs[i], err)
			}
			if m["flags"] != "master" || m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s: master flags %s, %s replicas, %s other sentinels",
					addrs[i], m["flags"], m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return s.sentinelsSeeReplica(ctx, replica, master, true)
	})
	s.URL = "redis+sentinel://" + addrs[0] + "?master_name=" + s.MasterName + "&addr=" + strings.Join(addrs[1:], "&addr=")
	t.Logf("redistest: Redis Sentinel (a master, a replica, 3 sentinels) ready in %v (%s)",
		time.Since(began).Round(time.Millisecond), s.URL)
	return s
}

func (s *Sentinel) admin(nd *Server) *redis.Client {
	for i, n := range s.Nodes {
		if n == nd {
			return s.admins[i]
		}
	}
	panic("redistest: not a data node of this Sentinel deployment: " + nd.Addr)
}

func (s *Sentinel) byAddr(addr string) *Server {
	for _, nd := range s.Nodes {
		if nd.Addr == addr {
			return nd
		}
	}
	return nil
}

// inSync: replica says it replicates master and its link is up.
func (s *Sentinel) inSync(ctx context.Context, replica, master *Server) error {
	info, err := s.admin(replica).Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", replica.Addr, err)
	}
	role, host, port, link := infoField(info, "role"), infoField(info, "master_host"), infoField(info, "master_port"), infoField(info, "master_link_status")
	if role != "slave" || net.JoinHostPort(host, port) != master.Addr || link != "up" {
		return fmt.Errorf("%s: role:%s of %s:%s, master_link_status:%s; want a replica of %s, link up", replica.Addr, role, host, port, link, master.Addr)
	}
	return nil
}

// sentinelsSeeReplica: every running sentinel lists replica as a replica
// of master with nothing wrong (it could promote it). strict: the
// sentinels' own record of the replica's link (from an INFO they send
// every 10 s) says it is up too.
func (s *Sentinel) sentinelsSeeReplica(ctx context.Context, replica, master *Server, strict bool) error {
	for i, c := range s.sentinels {
		if !s.Sentinels[i].running() {
			continue
		}
		rs, err := c.Replicas(ctx, s.MasterName).Result()
		if err != nil {
			return fmt.Errorf("SENTINEL REPLICAS on %s: %w", s.Sentinels[i].Addr, err)
		}
		found := false
		for _, r := range rs {
			if net.JoinHostPort(r["ip"], r["port"]) != replica.Addr {
				continue
			}
			found = true
			if r["flags"] != "slave" || strict && (r["master-link-status"] != "ok" || net.JoinHostPort(r["master-host"], r["master-port"]) != master.Addr) {
				return fmt.Errorf("sentinel %s sees replica %s as %s, link %s, of %s:%s", s.Sentinels[i].Addr, replica.Addr,
					r["flags"], r["master-link-status"], r["master-host"], r["master-port"])
			}
		}
		if !found {
			return fmt.Errorf("sentinel %s does not list %s as a replica", s.Sentinels[i].Addr, replica.Addr)
		}
	}
	return nil
}

// masterAddr asks the running sentinels for the master's address; it
// fails unless they all give the same.
func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var addr string
	for i, c := range s.sentinels {
		if !s.Sentinels[i].running() {
			continue
		}
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		if err != nil {
			return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME on %s: %w", s.Sentinels[i].Addr, err)
		}
		if len(hp) != 2 {
			return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME on %s: %q", s.Sentinels[i].Addr, hp)
		}
		a := net.JoinHostPort(hp[0], hp[1])
		if addr != "" && a != addr {
			return "", fmt.Errorf("sentinels disagree: %s and %s", addr, a)
		}
		addr = a
	}
	if addr == "" {
		return "", errors.New("no sentinel runs")
	}
	return addr, nil
}

// MasterAddr returns the master's address as the sentinels give it (they
// must agree).
func (s *Sentinel) MasterAddr(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := s.masterAddr(ctx)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return addr
}

// Master returns the data node the sentinels give as the master now.
func (s *Sentinel) Master(t testing.TB) *Server {
	t.Helper()
	addr := s.MasterAddr(t)
	nd := s.byAddr(addr)
	if nd == nil {
		t.Fatalf("redistest: the sentinels give %s as master, not a node of this deployment", addr)
	}
	return nd
}

// Replica returns the data node that is not the master now.
func (s *Sentinel) Replica(t testing.TB) *Server {
	t.Helper()
	m := s.Master(t)
	if m == s.Nodes[0] {
		return s.Nodes[1]
	}
	return s.Nodes[0]
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER: the replica
// is promoted at once, without waiting for the master to agree; the old
// master is turned into a replica later, about 8 s on) and returns the new
// master once every sentinel gives it and it answers as a master
// (WaitNewMaster).
func (s *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	old := s.MasterAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := s.sentinels[s.runningSentinel(t)].Failover(ctx, s.MasterName).Err()
	cancel()
	if err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER %s: %v", s.MasterName, err)
	}
	return s.WaitNewMaster(t, old)
}

func (s *Sentinel) runningSentinel(t testing.TB) int {
	t.Helper()
	for i, sn := range s.Sentinels {
		if sn.running() {
			return i
		}
	}
	t.Fatal("redistest: no sentinel runs")
	return 0
}

// KillMaster ends the master at once (SIGKILL), as a crash would, and
// returns it. The sentinels promote the replica a few seconds later
// (WaitNewMaster); RestartAsReplica brings the killed node back.
func (s *Sentinel) KillMaster(t testing.TB) *Server {
	t.Helper()
	m := s.Master(t)
	m.Stop(t)
	return m
}

// WaitNewMaster waits until every running sentinel gives a master other
// than old (an address) and that node answers ROLE as a master; it
// returns that node.
func (s *Sentinel) WaitNewMaster(t testing.TB, old string) *Server {
	t.Helper()
	var now *Server
	waitUntil(t, topologyBound, "the sentinels switch to a master other than "+old, func(ctx context.Context) error {
		addr, err := s.masterAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("the sentinels still give %s", old)
		}
		nd := s.byAddr(addr)
		if nd == nil {
			return fmt.Errorf("the sentinels give %s, not a node of this deployment", addr)
		}
		role, err := s.admin(nd).Do(ctx, "role").Slice()
		if err != nil {
			return fmt.Errorf("ROLE on %s: %w", addr, err)
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s answers ROLE %v", addr, role)
		}
		now = nd
		return nil
	})
	return now
}

// RestartAsReplica starts a killed data node again (empty: no persistence)
// as a replica of the current master from its first moment (--replicaof:
// it never answers as an empty master), and waits until it is in sync and
// every running sentinel sees it as a replica that could be promoted
// (WaitReplica).
func (s *Sentinel) RestartAsReplica(t testing.TB, nd *Server) {
	t.Helper()
	master := s.Master(t)
	if master == nd {
		t.Fatalf("redistest: RestartAsReplica: the sentinels still give %s as the master", nd.Addr)
	}
	nd.args = []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}
	nd.Start(t)
	s.WaitReplica(t, nd)
}

// WaitReplica waits until nd is a replica of the master the sentinels
// give and in sync (it says so), and every running sentinel lists it as a
// replica, neither down nor disconnected: a later failover can promote it.
// After Failover the sentinels turn the old master into a replica
// themselves, about 8 s later.
func (s *Sentinel) WaitReplica(t testing.TB, nd *Server) {
	t.Helper()
	waitUntil(t, topologyBound, nd.Addr+" replicates the master", func(ctx context.Context) error {
		addr, err := s.masterAddr(ctx)
		if err != nil {
			return err
		}
		master := s.byAddr(addr)
		if master == nil || master == nd {
			return fmt.Errorf("the sentinels give %s as the master", addr)
		}
		if err := s.inSync(ctx, nd, master); err != nil {
			return err
		}
		return s.sentinelsSeeReplica(ctx, nd, master, false)
	})
}

// SentinelEvent is one message a sentinel published.
type SentinelEvent struct {
	// Sentinel is the address of the sentinel that published it.
	Sentinel string
	// Channel is the event, e.g. "+switch-master".
	Channel string
	// Payload is its text, e.g. "esmaster 127.0.0.1 40001 127.0.0.1 40002"
	// for +switch-master.
	Payload string
	// Received is when this package received it.
	Received time.Time
}

// Events subscribes to channels (e.g. "+switch-master", "+sdown") on every
// sentinel and returns their messages, from the moment it returns (every
// subscription is confirmed) until the test ends. The channel holds 256
// events; further ones wait for the test to read.
func (s *Sentinel) Events(t testing.TB, channels ...string) <-chan SentinelEvent {
	t.Helper()
	out := make(chan SentinelEvent, 256)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var subs []*redis.PubSub
	t.Cleanup(func() {
		close(done)
		for _, ps := range subs {
			ps.Close()
		}
		wg.Wait()
	})
	for i, c := range s.sentinels {
		addr := s.Sentinels[i].Addr
		ps := c.Subscribe(context.Background(), channels...)
		subs = append(subs, ps)
		for range channels {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			msg, err := ps.Receive(ctx)
			cancel()
			if _, ok := msg.(*redis.Subscription); err != nil || !ok {
				t.Fatalf("redistest: SUBSCRIBE %v on sentinel %s: %v %v", channels, addr, msg, err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := ps.ReceiveMessage(context.Background())
				if err != nil {
					select { // go-redis reconnects and subscribes again
					case <-done:
						return
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				select {
				case out <- SentinelEvent{Sentinel: addr, Channel: msg.Channel, Payload: msg.Payload, Received: time.Now()}:
				case <-done:
					return
				}
			}
		}()
	}
	return out
}

// Prefix returns a key prefix no other test uses (see Server.Prefix): a
// test sharing the deployment with others keeps to its own keys.
func (s *Sentinel) Prefix(t testing.TB) string {
	t.Helper()
	return prefix(t)
}
