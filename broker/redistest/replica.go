package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// NewReplicated starts a master and a replica of it (no Sentinel), as
// NewLocal starts one server, and returns once the replica is in sync.
func NewReplicated(t testing.TB) (master, replica *Server) {
	t.Helper()
	master, replica = &Server{}, &Server{}
	launchAll(t, "no redis-server in PATH (a replication test starts its own servers; REDIS_URL cannot serve it)",
		[]*Server{master, replica})
	a := adminClient(replica.Addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := a.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(master.port)).Err()
	cancel()
	if err != nil {
		t.Fatalf("redistest: REPLICAOF on %s: %v", replica.Addr, err)
	}
	waitUntil(t, topologyBound, "the replica syncs", func(ctx context.Context) error {
		info, err := a.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		host, port, link := infoField(info, "master_host"), infoField(info, "master_port"), infoField(info, "master_link_status")
		if net.JoinHostPort(host, port) != master.Addr || link != "up" {
			return fmt.Errorf("%s replicates %s:%s, link %s", replica.Addr, host, port, link)
		}
		return nil
	})
	return master, replica
}

// Pause stops the server's process (SIGSTOP) without closing anything, as
// a machine that hangs would: connections stay open and nothing is
// answered until Resume. A paused server is killed when the test ends.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, "Pause", syscall.SIGSTOP)
}

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, "Resume", syscall.SIGCONT)
}

func (s *Server) signal(t testing.TB, what string, sig syscall.Signal) {
	t.Helper()
	s.needLocal(t, what)
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		t.Fatalf("redistest: %s: the server on %s is not running", what, s.Addr)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("redistest: %s %s: %v", what, s.Addr, err)
	}
}
