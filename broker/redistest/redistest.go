// Package redistest gives tests a real Redis: a redis-server from PATH,
// started on a free loopback port with no persistence (--save "",
// --appendonly no) in a temporary folder, or the server REDIS_URL names.
// NewPersistent starts one that fsyncs every write to its append-only file;
// NewProxy puts a loopback TCP proxy in front of a server, to lose replies
// or starve a subscription on purpose. NewCluster starts a Redis Cluster and
// NewSentinel a master, a replica and three sentinels, from redis-server
// processes in the same way, with what a test needs to fail them over.
//
// When neither is possible the test is skipped with a loud reason, except
// when the environment has CI=true, where it fails: CI must run these tests.
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/electric-socket/electric-socket/tests/skipreport"
)

// startBound bounds how long a redis-server may take to answer its first
// PING, and how long a stopped one may take to exit.
const startBound = 10 * time.Second

// Server is one Redis for a test. Its methods may be called from any
// goroutine; those that take a testing.TB fail that test on errors.
type Server struct {
	// URL is the server's URL, e.g. "redis://127.0.0.1:40123/0".
	URL string
	// Addr is its host:port.
	Addr string
	// Local is true when this package started the server (Stop and Start
	// work only then).
	Local bool

	bin, dir string
	port     int
	persist  bool // appendonly yes, appendfsync always

	// cport is the Cluster bus port of a Cluster node (cluster.go); 0 for
	// a server that is not one.
	cport   int
	cluster bool
	// sentinel: the server runs as a Sentinel with dir/sentinel.conf
	// (sentinel.go), which Sentinel rewrites as it learns.
	sentinel bool
	// args are more redis-server arguments (Sentinel.RestartAsReplica).
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd ended
}

// New returns the Redis REDIS_URL names when it is set, else a redis-server
// started for this test and stopped when it ends.
func New(t testing.TB) *Server {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("redistest: REDIS_URL: %v", err)
		}
		return &Server{URL: u, Addr: o.Addr}
	}
	return NewLocal(t)
}

// NewLocal starts a redis-server from PATH for this test even when
// REDIS_URL is set: for tests that stop and restart it.
func NewLocal(t testing.TB) *Server {
	t.Helper()
	return newLocal(t, false)
}

// NewPersistent starts a redis-server from PATH, like NewLocal, with
// persistence on: every write is appended to its AOF file and fsynced
// before Redis answers (--appendonly yes --appendfsync always), so Stop
// (SIGKILL) and Start lose nothing Redis acknowledged.
func NewPersistent(t testing.TB) *Server {
	t.Helper()
	return newLocal(t, true)
}

func newLocal(t testing.TB, persist bool) *Server {
	t.Helper()
	why := "no redis-server in PATH and REDIS_URL is not set"
	if os.Getenv("REDIS_URL") != "" {
		why = "no redis-server in PATH (this test stops and starts its own server: REDIS_URL cannot serve it)"
	}
	s := &Server{persist: persist}
	s.launch(t, why)
	return s
}

// launch starts s, configured but not yet started, on free loopback ports
// in a temporary folder (s.dir when set), and kills it when the test ends.
// why is the reason given when there is no redis-server in PATH.
func (s *Server) launch(t testing.TB, why string) {
	t.Helper()
	s.prepare(t, why)
	if err := s.startFree(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// prepare readies s for startFree: the redis-server binary, the folder,
// and the kill when the test ends.
func (s *Server) prepare(t testing.TB, why string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, why)
	}
	s.Local, s.bin = true, bin
	if s.dir == "" {
		s.dir = t.TempDir()
	}
	t.Cleanup(func() { s.kill() })
}

// startFree starts s on free ports. It may run on any goroutine.
func (s *Server) startFree() error {
	var lastErr error
	for try := 0; try < 5; try++ { // a free port may be taken before redis-server binds it
		port, err := freePort()
		if err != nil {
			return err
		}
		if s.cluster {
			if s.cport, err = freePort(); err != nil {
				return err
			}
		}
		s.port = port
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.URL = "redis://" + s.Addr + "/0"
		if lastErr = s.start(); lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("redis-server does not start: %w", lastErr)
}

// launchAll starts servers at once, as launch does one by one.
func launchAll(t testing.TB, why string, servers []*Server) {
	t.Helper()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		s.prepare(t, why)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startFree()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// unavailable skips the test, or fails it when CI=true.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("redistest: " + why + ": FAILING this Redis test because CI=true (CI must install redis-server or set REDIS_URL)")
	}
	skipreport.Skip(t, "redistest: "+why+": SKIPPING this Redis test (tests/install.sh installs redis-server; or set REDIS_URL; with CI=true it fails)")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs redis-server on s.port and waits until it answers PING.
func (s *Server) start() error {
	logFile := filepath.Join(s.dir, "redis.log")
	var args []string
	if s.sentinel {
		args = []string{filepath.Join(s.dir, "sentinel.conf"), "--sentinel"}
	}
	args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1")
	switch {
	case s.sentinel:
	case s.persist:
		args = append(args, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
	default:
		args = append(args, "--save", "", "--appendonly", "no")
	}
	if !s.sentinel {
		// A replica's sync starts at once, not after the default 5 s wait
		// for more replicas.
		args = append(args, "--repl-diskless-sync-delay", "0")
	}
	if s.cluster {
		args = append(args, clusterArgs(s.cport)...)
	}
	args = append(args, s.args...)
	args = append(args, "--dir", s.dir, "--logfile", logFile, "--daemonize", "no")
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(startBound)
	for {
		if err := ping(s.Addr); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, tail(logFile))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d does not answer PING within %v: %s", s.port, startBound, tail(logFile))
		}
	}
}

// ping sends one PING over a fresh connection.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// kill ends the server at once (SIGKILL) and waits for it to exit.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(startBound):
	}
}

// running reports whether the server's process runs (not stopped).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) needLocal(t testing.TB, what string) {
	t.Helper()
	if !s.Local {
		t.Fatalf("redistest: %s needs a server started by redistest (NewLocal), not REDIS_URL", what)
	}
}

// Stop kills the server as a crash would (SIGKILL): what was not saved is
// lost, and every client connection breaks.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.needLocal(t, "Stop")
	s.kill()
}

// Start starts a stopped server again on the same port. It loads what the
// last SAVE wrote, if anything.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.needLocal(t, "Start")
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		t.Fatal("redistest: Start: the server is running")
	}
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart on %s: %v", s.Addr, err)
	}
}

// Client returns a go-redis client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Prefix returns a key prefix no other test uses, such as
// "test:TestRedisContract_abort:1f2e3d4c:", so tests sharing one server
// (REDIS_URL) never see each other's keys. On a REDIS_URL server the keys
// under it (and under "{" + it) are deleted when the test ends.
func (s *Server) Prefix(t testing.TB) string {
	t.Helper()
	p := prefix(t)
	if s.Local {
		return p // the server and its data go when the test ends
	}
	t.Cleanup(func() {
		// "{<prefix>..." are the broker's own keys: operation records and
		// the fleet's leases, named with a hash tag.
		for _, pattern := range []string{p, "{" + p} {
			if err := deleteKeys(s.URL, pattern); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("redistest: cleaning %s*: %v", pattern, err)
			}
		}
	})
	return p
}

// prefix is a key prefix of t's own (Server.Prefix).
func prefix(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 60 {
		name = name[:60]
	}
	return "test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

func deleteKeys(url, prefix string) error {
	o, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	o.MaxRetries, o.DialerRetries = -1, 1
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}
