package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of the Cluster nodes: a
// node that does not answer for this long is suspected failed, and a
// master the others agree is failed is replaced by one of its replicas
// about a second later. Short, for tests, yet long enough that a loaded
// machine does not make a node look dead.
const ClusterNodeTimeout = 2 * time.Second

// clusterSlots is how many hash slots a Redis Cluster has.
const clusterSlots = 16384

// clusterArgs are the redis-server arguments of a Cluster node whose
// cluster bus listens on cport. Its cluster state (nodes.conf) stays in
// its folder, so a node restarted after a kill keeps its identity.
func clusterArgs(cport int) []string {
	return []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-port", strconv.Itoa(cport),
		"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10)}
}

// Cluster is a Redis Cluster for a test: redis-server processes on free
// loopback ports, each in a temporary folder, with no persistence, killed
// when the test ends. Its methods fail the test they are given on errors:
// call them from the test's goroutine.
type Cluster struct {
	// URL names the cluster as the redis broker accepts it (every node
	// seeds it): "redis+cluster://127.0.0.1:p1?addr=127.0.0.1:p2&addr=...".
	URL string
	// Nodes are the cluster's nodes: first the masters the cluster was
	// created with, then their replicas (those of Nodes[0] first). Roles
	// change with failovers: Role, Masters and MasterOf say what they are
	// now.
	Nodes []*ClusterNode
}

// ClusterNode is one redis-server of a Cluster. Server.Addr is its
// address, Server.Client a client of this node alone.
type ClusterNode struct {
	*Server
	// ID is its Cluster node id.
	ID string

	admin *redis.Client
}

// NewCluster starts a Redis Cluster of masters masters (the hash slots
// split evenly between them), each with replicasPerMaster replicas, and
// returns once every node reports cluster_state:ok, agrees on who serves
// each slot, every replica is in sync with its master, and every node
// lists the replicas in CLUSTER SLOTS (clients see them). The test is
// skipped when there is no redis-server in PATH, or fails when CI=true.
// It needs Redis 7 or later (CLUSTER ADDSLOTSRANGE, cluster-port).
func NewCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	if masters < 1 || replicasPerMaster < 0 {
		t.Fatalf("redistest: NewCluster(%d, %d): at least one master, no negative replicas", masters, replicasPerMaster)
	}
	began := time.Now()
	c := &Cluster{}
	n := masters * (1 + replicasPerMaster)
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = &Server{cluster: true}
	}
	launchAll(t, "no redis-server in PATH (a Redis Cluster test starts its own nodes; REDIS_URL cannot serve it)", servers)
	for _, s := range servers {
		nd := &ClusterNode{Server: s, admin: adminClient(s.Addr)}
		t.Cleanup(func() { nd.admin.Close() })
		c.Nodes = append(c.Nodes, nd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), topologyBound)
	defer cancel()
	do := func(nd *ClusterNode, args ...any) *redis.Cmd {
		t.Helper()
		cmd := nd.admin.Do(ctx, args...)
		if err := cmd.Err(); err != nil {
			t.Fatalf("redistest: %v on cluster node %s: %v", args, nd.Addr, err)
		}
		return cmd
	}
	for i, nd := range c.Nodes {
		nd.ID = fmt.Sprint(do(nd, "cluster", "myid").Val())
		// Distinct epochs from the start, as redis-cli --cluster create
		// sets them, so the masters need not settle a collision first.
		do(nd, "cluster", "set-config-epoch", i+1)
	}
	for i := range masters {
		do(c.Nodes[i], "cluster", "addslotsrange", i*clusterSlots/masters, (i+1)*clusterSlots/masters-1)
	}
	for i, a := range c.Nodes {
		for _, b := range c.Nodes[i+1:] {
			do(a, "cluster", "meet", "127.0.0.1", b.port, b.cport)
		}
	}
	waitUntil(t, topologyBound, "cluster nodes meet", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			v, err := nd.view(ctx)
			if err != nil {
				return err
			}
			for _, other := range c.Nodes {
				e, ok := v[other.ID]
				if !ok {
					return fmt.Errorf("%s does not know %s yet", nd.Addr, other.Addr)
				}
				if e.has("handshake") || e.has("noaddr") || !e.connected {
					return fmt.Errorf("%s sees %s as %s (%s)", nd.Addr, other.Addr, e.flags, e.link)
				}
			}
		}
		return nil
	})
	for i, nd := range c.Nodes[masters:] {
		do(nd, "cluster", "replicate", c.Nodes[i/replicasPerMaster].ID)
	}
	c.WaitOK(t)
	if replicasPerMaster > 0 {
		c.waitReplicasListed(t, masters, replicasPerMaster)
	}
	c.URL = "redis+cluster://" + c.Nodes[0].Addr
	for i, nd := range c.Nodes[1:] {
		c.URL += "&addr=" + nd.Addr
		if i == 0 {
			c.URL = strings.Replace(c.URL, "&", "?", 1)
		}
	}
	t.Logf("redistest: Redis Cluster of %d masters x %d replicas ready in %v (%s)",
		masters, replicasPerMaster, time.Since(began).Round(time.Millisecond), c.URL)
	return c
}

// waitReplicasListed writes a key on each master and waits until every
// node lists each master's replicas in CLUSTER SLOTS, where clients learn
// of them: Redis leaves out a replica whose replication offset is 0 (one
// that has replicated nothing yet), as every replica of a new cluster is.
func (c *Cluster) waitReplicasListed(t testing.TB, masters, replicasPerMaster int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), topologyBound)
	defer cancel()
	for _, m := range c.Nodes[:masters] {
		key := c.KeyOn(t, m, "redistest:warm:", func(k string) string { return k })
		if err := m.admin.Set(ctx, key, "1", 0).Err(); err != nil {
			t.Fatalf("redistest: SET %s on %s: %v", key, m.Addr, err)
		}
	}
	waitUntil(t, topologyBound, "every node lists the replicas in CLUSTER SLOTS", func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			slots, err := nd.admin.ClusterSlots(ctx).Result()
			if err != nil {
				return fmt.Errorf("CLUSTER SLOTS on %s: %w", nd.Addr, err)
			}
			for _, r := range slots {
				if len(r.Nodes) != 1+replicasPerMaster {
					return fmt.Errorf("%s lists %d nodes for slots %d-%d, want %d", nd.Addr, len(r.Nodes), r.Start, r.End, 1+replicasPerMaster)
				}
			}
		}
		return nil
	})
}

// clusterEntry is one line of CLUSTER NODES: what one node thinks of
// another.
type clusterEntry struct {
	id, addr  string
	flags     string // "master", "slave", "myself,master", "master,fail", ...
	master    string // the id of its master; "-" for a master
	link      string // "connected" or "disconnected"
	connected bool
	slots     []string // "0-5460", "5461", ...
}

func (e clusterEntry) has(flag string) bool {
	return slices.Contains(strings.Split(e.flags, ","), flag)
}

// isMaster: the entry is a master (failing or not).
func (e clusterEntry) isMaster() bool { return e.has("master") }

func (e clusterEntry) failing() bool { return e.has("fail") || e.has("fail?") }

// clusterView is one node's CLUSTER NODES, by node id.
type clusterView map[string]clusterEntry

// view asks nd for its CLUSTER NODES.
func (nd *ClusterNode) view(ctx context.Context) (clusterView, error) {
	text, err := nd.admin.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", nd.Addr, err)
	}
	v := make(clusterView)
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES on %s: cannot read %q", nd.Addr, line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		v[f[0]] = clusterEntry{id: f[0], addr: addr, flags: f[2], master: f[3], link: f[7],
			connected: f[7] == "connected" || strings.Contains(f[2], "myself"), slots: f[8:]}
	}
	return v, nil
}

// owners says which node id serves each slot in v ("" for none).
func (v clusterView) owners() ([clusterSlots]string, error) {
	var o [clusterSlots]string
	for id, e := range v {
		for _, r := range e.slots {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 0 || b >= clusterSlots || a > b {
				return o, fmt.Errorf("cannot read slots %q of %s", r, e.addr)
			}
			for s := a; s <= b; s++ {
				o[s] = id
			}
		}
	}
	return o, nil
}

// live returns the nodes whose process runs.
func (c *Cluster) live() []*ClusterNode {
	var l []*ClusterNode
	for _, nd := range c.Nodes {
		if nd.running() {
			l = append(l, nd)
		}
	}
	return l
}

func (c *Cluster) byID(id string) *ClusterNode {
	for _, nd := range c.Nodes {
		if nd.ID == id {
			return nd
		}
	}
	return nil
}

// healthy reports why the cluster is not serving as it should, or nil:
// every running node says cluster_state:ok with every slot served, sees
// every other running node connected and not failing, and all agree on
// who serves each slot (a running master) and whose replica each running
// node is; every running replica is in sync with its master.
func (c *Cluster) healthy(ctx context.Context) error {
	live := c.live()
	if len(live) == 0 {
		return errors.New("no node runs")
	}
	var first string
	var firstAddr string
	for _, nd := range live {
		info, err := nd.admin.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("CLUSTER INFO on %s: %w", nd.Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s says cluster_state:%s", nd.Addr, st)
		}
		if ok := infoField(info, "cluster_slots_ok"); ok != strconv.Itoa(clusterSlots) {
			return fmt.Errorf("%s says cluster_slots_ok:%s", nd.Addr, ok)
		}
		v, err := nd.view(ctx)
		if err != nil {
			return err
		}
		owners, err := v.owners()
		if err != nil {
			return err
		}
		var sum strings.Builder
		for _, other := range live {
			e, ok := v[other.ID]
			switch {
			case !ok:
				return fmt.Errorf("%s does not know %s", nd.Addr, other.Addr)
			case e.failing() || e.has("handshake") || !e.connected:
				return fmt.Errorf("%s sees %s as %s (%s)", nd.Addr, other.Addr, e.flags, e.link)
			}
			fmt.Fprintf(&sum, "%s master=%v of=%s; ", other.Addr, e.isMaster(), e.master)
		}
		for s, id := range owners {
			owner := c.byID(id)
			if owner == nil || !owner.running() {
				return fmt.Errorf("%s says slot %d is served by %q, not a running node", nd.Addr, s, id)
			}
			if s == 0 || owners[s-1] != id {
				fmt.Fprintf(&sum, "%d:%s ", s, owner.Addr)
			}
		}
		if first == "" {
			first, firstAddr = sum.String(), nd.Addr
		} else if sum.String() != first {
			return fmt.Errorf("nodes disagree: %s sees %s; %s sees %s", firstAddr, first, nd.Addr, sum.String())
		}
		if e := v[nd.ID]; e.has("slave") {
			repl, err := nd.admin.Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("INFO replication on %s: %w", nd.Addr, err)
			}
			if st := infoField(repl, "master_link_status"); st != "up" {
				return fmt.Errorf("replica %s: master_link_status:%s", nd.Addr, st)
			}
		}
	}
	return nil
}

// WaitOK waits until the cluster serves again: every running node says
// cluster_state:ok, sees the other running nodes as connected and not
// failing, and all agree on which running master serves each slot; every
// running replica is in sync with its master.
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	waitUntil(t, topologyBound, "the cluster is ok on every running node", c.healthy)
}

// state is a running node's view of the cluster.
func (c *Cluster) state(t testing.TB) clusterView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, nd := range c.live() {
		v, err := nd.view(ctx)
		if err == nil {
			return v
		}
		errs = append(errs, err)
	}
	t.Fatalf("redistest: no running cluster node answers CLUSTER NODES: %v", errors.Join(errs...))
	return nil
}

// Role returns "master" or "replica": what nd is now, as a running node
// sees it.
func (c *Cluster) Role(t testing.TB, nd *ClusterNode) string {
	t.Helper()
	e, ok := c.state(t)[nd.ID]
	switch {
	case !ok:
		t.Fatalf("redistest: the cluster does not know %s", nd.Addr)
	case e.isMaster():
		return "master"
	}
	return "replica"
}

// Masters returns the nodes that serve slots now, as a running node sees
// it, in the order of Nodes.
func (c *Cluster) Masters(t testing.TB) []*ClusterNode {
	t.Helper()
	v := c.state(t)
	var m []*ClusterNode
	for _, nd := range c.Nodes {
		if e, ok := v[nd.ID]; ok && e.isMaster() && len(e.slots) > 0 {
			m = append(m, nd)
		}
	}
	return m
}

// ReplicasOf returns the nodes that replicate master now, as a running
// node sees it.
func (c *Cluster) ReplicasOf(t testing.TB, master *ClusterNode) []*ClusterNode {
	t.Helper()
	v := c.state(t)
	var r []*ClusterNode
	for _, nd := range c.Nodes {
		if e, ok := v[nd.ID]; ok && e.master == master.ID {
			r = append(r, nd)
		}
	}
	return r
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT on a running node).
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, nd := range c.live() {
		s, err := nd.admin.ClusterKeySlot(ctx, key).Result()
		if err == nil {
			return int(s)
		}
		errs = append(errs, err)
	}
	t.Fatalf("redistest: CLUSTER KEYSLOT %q: %v", key, errors.Join(errs...))
	return 0
}

// MasterOf returns the node that serves key's slot now, as a running node
// sees it.
func (c *Cluster) MasterOf(t testing.TB, key string) *ClusterNode {
	t.Helper()
	slot := c.Slot(t, key)
	owners, err := c.state(t).owners()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	nd := c.byID(owners[slot])
	if nd == nil {
		t.Fatalf("redistest: no node serves slot %d of %q", slot, key)
	}
	return nd
}

// KeyOn returns the first of base+"0", base+"1", ... for which
// name(key) is served by master now: a key the test can put on a given
// node, where name turns the key into the name Redis sees (for a broker,
// its prefix, the namespace and a dot before it).
func (c *Cluster) KeyOn(t testing.TB, master *ClusterNode, base string, name func(key string) string) string {
	t.Helper()
	owners, err := c.state(t).owners()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	for i := range 10000 {
		key := base + strconv.Itoa(i)
		if owners[c.Slot(t, name(key))] == master.ID {
			return key
		}
	}
	t.Fatalf("redistest: no key %s<n> is served by %s", base, master.Addr)
	return ""
}

// Kill ends nd at once (SIGKILL), as a crash would. Its data is lost (no
// persistence); its cluster identity (nodes.conf) stays for Restart.
func (c *Cluster) Kill(t testing.TB, nd *ClusterNode) {
	t.Helper()
	nd.Stop(t)
}

// Restart starts a killed node again on its ports with its cluster
// identity, and waits until the cluster is ok with it (WaitOK). A master
// whose slots a replica took over in the meantime comes back as that
// replica's replica; one whose slots nobody took serves them again, empty.
func (c *Cluster) Restart(t testing.TB, nd *ClusterNode) {
	t.Helper()
	nd.Start(t)
	c.WaitOK(t)
}

// Failover makes replica the master of its master's slots with CLUSTER
// FAILOVER (a manual failover: the master stops taking writes until the
// replica has all of them, so nothing acknowledged is lost), and waits
// until every running node agrees and the cluster is ok (WaitOK). The old
// master becomes a replica of it.
func (c *Cluster) Failover(t testing.TB, replica *ClusterNode) {
	t.Helper()
	e, ok := c.state(t)[replica.ID]
	if !ok || !e.has("slave") {
		t.Fatalf("redistest: Failover: %s is not a replica (%s)", replica.Addr, e.flags)
	}
	old := c.byID(e.master)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := replica.admin.Do(ctx, "cluster", "failover").Err()
	cancel()
	if err != nil {
		t.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica.Addr, err)
	}
	c.waitServes(t, replica, old)
}

// WaitNewMaster waits until key's slot is served by a master other than
// old, in every running node's view, and the cluster is ok (WaitOK); it
// returns that master. After Kill of a master with a replica, the replica
// takes over about ClusterNodeTimeout plus a second later.
func (c *Cluster) WaitNewMaster(t testing.TB, key string, old *ClusterNode) *ClusterNode {
	t.Helper()
	slot := c.Slot(t, key)
	var now *ClusterNode
	waitUntil(t, topologyBound, fmt.Sprintf("slot %d (%q) served by a master other than %s", slot, key, old.Addr),
		func(ctx context.Context) error {
			if err := c.healthy(ctx); err != nil {
				return err
			}
			v, err := c.live()[0].view(ctx)
			if err != nil {
				return err
			}
			owners, err := v.owners()
			if err != nil {
				return err
			}
			if owners[slot] == old.ID {
				return fmt.Errorf("still served by %s", old.Addr)
			}
			now = c.byID(owners[slot])
			return nil
		})
	return now
}

// waitServes waits until nd is a master, serves what old served, and the
// cluster is ok.
func (c *Cluster) waitServes(t testing.TB, nd, old *ClusterNode) {
	t.Helper()
	waitUntil(t, topologyBound, fmt.Sprintf("%s takes over from %s", nd.Addr, old.Addr), func(ctx context.Context) error {
		v, err := nd.view(ctx)
		if err != nil {
			return err
		}
		if e := v[nd.ID]; !e.isMaster() || len(e.slots) == 0 {
			return fmt.Errorf("%s is %s, serving %v", nd.Addr, e.flags, e.slots)
		}
		if e := v[old.ID]; len(e.slots) > 0 {
			return fmt.Errorf("%s still serves %v", old.Addr, e.slots)
		}
		return c.healthy(ctx)
	})
}

// Prefix returns a key prefix no other test uses (see Server.Prefix): a
// test sharing the cluster with others keeps to its own keys.
func (c *Cluster) Prefix(t testing.TB) string {
	t.Helper()
	return prefix(t)
}
