package tests

import (
	"os"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/broker/redistest"
	"github.com/electric-socket/electric-socket/tests/testkit"
)

// TestReadyzFollowsASentinelFailover runs the binary (serve --admin) on a
// Sentinel deployment (a master, a replica, 3 sentinels) with [broker]
// replicas = 1: /readyz answers 200 while the master and its replica
// serve; 503 naming the cause once the master is killed; still 503 once
// the replica took over, since no replica is left to acknowledge an update
// (one would be answered broker_outcome_unknown); 200 again once the old
// master is back as the new master's replica.
func TestReadyzFollowsASentinelFailover(t *testing.T) {
	s := redistest.NewSentinel(t)
	bin := testkit.Binary(t)
	cfg := writeRedisConfig(t, s.URL, s.Prefix(t))
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "[broker]\n", "[broker]\nreplicas = 1\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	admin := testkit.FreeAddr(t)
	in := startInstance(t, "a", bin, cfg, "--admin", admin)
	ready := func(want int, says string) func() bool {
		return func() bool {
			in.Alive(t)
			status, v := readyz(t, admin)
			broker, _ := v["broker"].(string)
			return status == want && strings.Contains(broker, says)
		}
	}
	testkit.Eventually(t, redisBound, "/readyz to answer 200 with the master and its replica up", ready(200, "ok"))

	old := s.KillMaster(t)
	testkit.Eventually(t, redisBound, "/readyz to answer 503 with the master down", ready(503, "broker_unavailable"))
	s.WaitNewMaster(t, old.Addr)
	testkit.Eventually(t, redisBound, "/readyz to answer 503 while the new master has no replica",
		ready(503, "0 of the 1 replicas asked for ([broker] replicas) acknowledged"))

	s.RestartAsReplica(t, old)
	testkit.Eventually(t, redisBound, "/readyz to answer 200 once the new master has a replica", ready(200, "ok"))
}
