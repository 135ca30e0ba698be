// Command bombs measures what one hostile client message costs the server
// in memory: for each memory bomb it starts a fresh `electric-socket serve`
// (the real binary, with the given [lua] settings), logs a client in, sends
// the message that sets the bomb off in process_websocket_message, and
// reports the answer the client got, how long after the message it came,
// the server's peak resident memory (VmHWM of /proc/PID/status) and whether
// a second client of the same server was still answered afterwards. It is
// not run by CI; RELIABILITY.md shows its table.
//
//	go run ./tests/bombs                                  # the defaults ([lua] timeout 1s, max_memory from the config's default)
//	go run ./tests/bombs -timeout 30s                     # a long budget: only the caps and the memory guard stop a bomb
//	go run ./tests/bombs -max-memory 268435456 -only concat
//
// Linux only (it reads /proc).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

var (
	timeout   = flag.String("timeout", "", `[lua] timeout; empty: the default`)
	maxMemory = flag.String("max-memory", "", "[lua] max_memory in bytes; empty: the default")
	only      = flag.String("only", "", "run only the bombs whose name contains this")
	clients   = flag.Int("clients", 1, "clients that send the bomb at the same moment")
	bin       = flag.String("bin", "", "the electric-socket binary; empty: build it")
	keep      = flag.Bool("keep", false, "keep the work folder (logs, config)")
)

// A bomb is the body of process_websocket_message for a message {"bomb": name}.
type bomb struct{ name, lua string }

var bombs = []bomb{
	{"concat", `local s = "x" for i = 1, 40 do s = s .. s end`},
	{"concat-chain", `local s = string.rep("x", 1024 * 1024) local t = s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s .. s`},
	{"table-array", `local t = {} for i = 1, 1e9 do t[i] = i end`},
	{"table-append", `local t = {} while true do t[#t + 1] = true end`},
	{"table-hash", `local t = {} for i = 1, 1e9 do t[-i] = i end`},
	{"table-sparse", `local keep = {} for i = 1, 40 do local t = {} t[2^26 - 1] = true keep[i] = t end`},
	{"table-strings", `local t = {} local s = string.rep("x", 1024 * 1024) for i = 1, 1e9 do t[i] = s .. i end`},
	{"table.concat", `local s = string.rep("x", 1024 * 1024) local t = {} for i = 1, 4096 do t[i] = s end local r = table.concat(t)`},
	{"string.format", `local s = string.rep("x", 1024 * 1024) local a = {} for i = 1, 4096 do a[i] = s end local r = string.format(string.rep("%99s", 4096), unpack(a))`},
	{"string.rep", `local s = string.rep("x", 2^30)`},
	{"gsub", `local s = "x" for i = 1, 40 do s = string.gsub(s, "x", "xx") end`},
	{"gsub-replacement", `local s = string.rep("x", 1024 * 1024) local r = string.gsub(s, "x", string.rep("y", 1024))`},
	{"json_decode", `local keep = {} for i = 1, 100 do keep[i] = es.json_decode("[" .. string.rep("[],", 5000000) .. "[]]") end`},
	{"json_decode-deep", `local s = "[" .. string.rep("[],", 5000000) .. string.rep("[", 40) .. string.rep("]", 41) for i = 1, 100 do pcall(es.json_decode, s) end`},
	{"json_encode", `local t = {} for i = 1, 2^20 do t[i] = "xxxxxxxxxxxxxx" end local keep = {} for i = 1, 100 do keep[i] = es.json_encode(t) end`},
}

func main() {
	flag.Parse()
	log.SetFlags(0)
	work, err := os.MkdirTemp("", "es-bombs-")
	if err != nil {
		log.Fatal(err)
	}
	if *keep {
		log.Printf("work folder: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := run(work); err != nil {
		log.Printf("FAIL: %v", err)
		if !*keep {
			os.RemoveAll(work)
		}
		os.Exit(1)
	}
}

func run(work string) error {
	binary := *bin
	if binary == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		binary = filepath.Join(work, "electric-socket")
		out, err := exec.Command("go", "build", "-o", binary, root).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	var src strings.Builder
	src.WriteString("local es = require(\"es\")\nlocal M = {}\nfunction M.initial_authorisation() return {} end\n")
	src.WriteString("function M.process_websocket_message(channel, message)\n")
	for _, b := range bombs {
		fmt.Fprintf(&src, "  if message.bomb == %q then %s end\n", b.name, b.lua)
	}
	src.WriteString("  return { websocket_response = { ok = true } }\nend\nreturn M\n")
	script := filepath.Join(work, "bombs.lua")
	if err := os.WriteFile(script, []byte(src.String()), 0o644); err != nil {
		return err
	}
	lua := ""
	if *timeout != "" {
		lua += fmt.Sprintf("timeout = %q\n", *timeout)
	}
	if *maxMemory != "" {
		lua += "max_memory = " + *maxMemory + "\n"
	}
	cfg := filepath.Join(work, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"
ping_interval = "0s"   # a long budget must not end in a pong timeout: what is measured is the bomb

[lua]
watch = false
%s
[log]
level = "warn"

[[integration]]
name = "bombs"
path = "/bombs"
script = %q
`, lua, script)), 0o644); err != nil {
		return err
	}
	fmt.Printf("[lua] timeout %s, max_memory %s; %d client(s) at once\n\n", or(*timeout, "default"), or(*maxMemory, "default"), *clients)
	fmt.Println("| bomb | answer | after | peak RSS | idle RSS | still serving |")
	fmt.Println("|---|---|---|---|---|---|")
	for i, b := range bombs {
		if *only != "" && !strings.Contains(b.name, *only) {
			continue
		}
		r, err := measure(binary, cfg, filepath.Join(work, fmt.Sprintf("server-%d.log", i)), b)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		fmt.Printf("| %s | %s | %s | %d MiB | %d MiB | %v |\n", b.name, r.answer, r.after.Round(10*time.Millisecond), r.peak>>20, r.idle>>20, r.serving)
	}
	return nil
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

type result struct {
	answer     string
	after      time.Duration
	peak, idle uint64
	serving    bool
}

// measure runs one bomb against a fresh server.
func measure(binary, cfg, logPath string, b bomb) (result, error) {
	var r result
	logFile, err := os.Create(logPath)
	if err != nil {
		return r, err
	}
	defer logFile.Close()
	addr, err := freeAddr()
	if err != nil {
		return r, err
	}
	cmd := exec.Command(binary, "serve", "--config", cfg, "--listen", addr, "--admin", "off")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}()
	// Wait until it accepts connections (bounded).
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the server exited at start: %v (log %s)", err, logPath)
		default:
		}
		if time.Now().After(deadline) {
			return r, errors.New("the server did not listen within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dial := func() (*websocket.Conn, error) {
		c, _, err := websocket.Dial(ctx, "ws://"+addr+"/bombs", nil)
		if err != nil {
			return nil, err
		}
		c.SetReadLimit(32 << 20)
		if err := c.Write(ctx, websocket.MessageText, []byte(`{}`)); err != nil {
			return nil, err
		}
		return c, nil
	}
	bystander, err := dial()
	if err != nil {
		return r, err
	}
	var cs []*websocket.Conn
	for range *clients {
		c, err := dial()
		if err != nil {
			return r, err
		}
		cs = append(cs, c)
	}
	// The bystander reads all the time, as a client does: it answers the
	// server's pings while the bomb runs.
	heard := make(chan string, 1)
	go func() {
		for {
			_, data, err := bystander.Read(ctx)
			if err != nil {
				close(heard)
				return
			}
			heard <- string(data)
		}
	}()
	r.idle = vmHWM(cmd.Process.Pid)
	start := time.Now()
	for _, c := range cs {
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"bomb":%q}`, b.name))); err != nil {
			return r, err
		}
	}
	// Every client's answer; the table shows the first client's, and the
	// time the last one came.
	answers := make([]string, len(cs))
	done := make(chan struct{}, len(cs))
	for i, c := range cs {
		go func() {
			defer func() { done <- struct{}{} }()
			_, data, err := c.Read(ctx)
			if err != nil {
				answers[i] = "no answer: " + err.Error()
				return
			}
			var m map[string]any
			json.Unmarshal(data, &m)
			if m["id"] != "error" {
				answers[i] = string(data)
				return
			}
			msg, _ := m["message"].(string)
			if _, after, ok := strings.Cut(msg, "process_websocket_message: "); ok {
				msg = after
			}
			answers[i] = fmt.Sprintf("`%v`: %.80s", m["error"], msg)
		}()
	}
	for range cs {
		<-done
	}
	r.after = time.Since(start)
	r.answer = answers[0]
	for _, a := range answers[1:] {
		if a != answers[0] {
			r.answer += "; another: " + a
			break
		}
	}
	r.peak = vmHWM(cmd.Process.Pid)
	r.serving = false
	if err := bystander.Write(ctx, websocket.MessageText, []byte(`{"ping":1}`)); err == nil {
		if data, ok := <-heard; ok && strings.Contains(data, `"ok":true`) {
			r.serving = true
		}
	}
	for _, c := range cs {
		c.CloseNow()
	}
	bystander.CloseNow()
	return r, nil
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
