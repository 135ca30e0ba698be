package testkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// flavour is one way of building the command.
type flavour struct {
	race bool   // -race
	tags string // -tags
}

// build is the binary of one flavour, built once per test process.
type build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
	out  []byte
}

var (
	buildsMu sync.Mutex
	builds   = map[flavour]*build{}
)

// testTags are the build tags of the binaries the end-to-end tests run:
// estest adds the test hooks (host/fleet/testpause.go), which act only
// when a test sets their environment variable.
const testTags = "estest"

// moduleRoot is the folder of go.mod: two above this file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Binary returns the electric-socket command, built once per test process
// (with -race when the tests run with it, so that the server's races fail
// the end-to-end tests too, and with the test hooks) into a temporary
// folder that Cleanup removes.
func Binary(t testing.TB) string {
	t.Helper()
	return binary(t, flavour{race: Race, tags: testTags})
}

// LoadBinary is Binary built without -race: for the tests whose subject is
// load (thousands of clients at once against the shipped timeouts), which
// under the race detector's slowdown would measure the detector. Without
// -race it is the same build as Binary.
func LoadBinary(t testing.TB) string {
	t.Helper()
	return binary(t, flavour{tags: testTags})
}

// ProductionBinary is the command exactly as `go build` makes it for
// users: no -race, no test hooks.
func ProductionBinary(t testing.TB) string {
	t.Helper()
	return binary(t, flavour{})
}

func binary(t testing.TB, f flavour) string {
	t.Helper()
	buildsMu.Lock()
	b := builds[f]
	if b == nil {
		b = &build{}
		builds[f] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if b.dir, b.err = os.MkdirTemp("", "es-testkit-"); b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "electric-socket")
		args := []string{"build", "-o", b.bin}
		if f.race {
			args = append(args, "-race")
		}
		if f.tags != "" {
			args = append(args, "-tags", f.tags)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, append(args, ".")...)
		cmd.Dir = moduleRoot()
		b.out, b.err = cmd.CombinedOutput()
	})
	if b.err != nil {
		t.Fatalf("go build: %v\n%s", b.err, b.out)
	}
	return b.bin
}

// Cleanup removes what Binary, LoadBinary and ProductionBinary built;
// TestMain calls it after the tests.
func Cleanup() {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	for _, b := range builds {
		if b.dir != "" {
			os.RemoveAll(b.dir)
		}
	}
}

// Process is one running electric-socket command that serves.
type Process struct {
	Name   string
	Addr   string     // the --listen address
	Stderr *LogBuffer // its log
	Cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, set before exited closes
}

// Serve runs bin serve --listen <a free address> with args (in dir when
// not "") and returns once it logs msg=listening (text or JSON), within
// bound; it fails
// the test if the process exits first. When the test ends it is stopped
// with SIGTERM and must exit within bound (else it is killed and the test
// fails); its log is printed if the test failed.
func Serve(t testing.TB, name, bin, dir string, bound time.Duration, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, Addr: FreeAddr(t), Stderr: &LogBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, append([]string{"serve", "--listen", p.Addr}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = p.Stderr
	cmd.WaitDelay = WaitBound // Wait returns even if something keeps the stderr pipe open
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.Cmd = cmd
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM) // our own child, by its pid
			select {
			case <-p.exited:
			case <-time.After(bound):
				cmd.Process.Kill()
				select {
				case <-p.exited:
				case <-time.After(2 * WaitBound):
				}
				t.Errorf("%s did not stop within %v of SIGTERM", name, bound)
			}
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.Stderr.String())
		}
	})
	deadline := time.Now().Add(bound)
	for !listening(p.Stderr.String()) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited at start: %v\n%s", name, p.err, p.Stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen within %v:\n%s", name, bound, p.Stderr.String())
		}
	}
	return p
}

// listening reports whether log has the line of a server that listens, in
// the text or the JSON format.
func listening(log string) bool {
	return strings.Contains(log, "msg=listening") || strings.Contains(log, `"msg":"listening"`)
}

// Exited is closed once the process has ended; Err then says how.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is Wait's result once the process has ended; nil before.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Alive fails the test if the process has ended.
func (p *Process) Alive(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("%s exited: %v\n%s", p.Name, p.err, p.Stderr.String())
	default:
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }
