package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports.
const clockTicks = 100

// cpuTicks is utime+stime of a process (all its threads), from /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// the command name is in parentheses and may hold spaces: fields count
	// from after the last ')'
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return u + s, nil
}

// rssKB is VmRSS of a process in KiB, from /proc/PID/status.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procSet is the processes whose CPU and memory are measured.
type procSet []int

func (ps procSet) cpu() int64 {
	var t int64
	for _, p := range ps {
		v, err := cpuTicks(p)
		if err != nil {
			fatalf("cpu of pid %d: %v", p, err)
		}
		t += v
	}
	return t
}

func (ps procSet) rss() int64 {
	var t int64
	for _, p := range ps {
		v, err := rssKB(p)
		if err != nil {
			fatalf("rss of pid %d: %v", p, err)
		}
		t += v
	}
	return t
}

// memStats is what the bench binaries (refserver, profiled) serve at
// /debug/mallocs: runtime.MemStats counters.
type memStats struct {
	Mallocs    uint64 `json:"mallocs"`
	TotalAlloc uint64 `json:"total_alloc"`
	NumGC      uint32 `json:"num_gc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Goroutines int    `json:"goroutines"`
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

func fetchMemStats(urls []string) (memStats, bool) {
	var sum memStats
	if len(urls) == 0 {
		return sum, false
	}
	for _, u := range urls {
		resp, err := httpClient.Get(u)
		if err != nil {
			warnf("stats %s: %v", u, err)
			return sum, false
		}
		var m memStats
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil {
			warnf("stats %s: %v", u, err)
			return sum, false
		}
		sum.Mallocs += m.Mallocs
		sum.TotalAlloc += m.TotalAlloc
		sum.NumGC += m.NumGC
		sum.HeapInuse += m.HeapInuse
		sum.StackInuse += m.StackInuse
		sum.Goroutines += m.Goroutines
	}
	return sum, true
}

// fetchTo saves the body of url to path (a pprof profile).
func fetchTo(url, path string) error {
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// machineTicks is the time all CPUs spent busy (user, nice, system, irq,
// softirq, steal) and in irq and softirq (loopback TCP runs there), from
// the first line of /proc/stat.
func machineTicks() (busy, irq int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, v[5] + v[6]
}
