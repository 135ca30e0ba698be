package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cgroupFixture lays out root like a machine's /proc/self and cgroup mounts:
// files maps a path under root to its content.
func cgroupFixture(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	// A container with its own cgroup namespace on a cgroup v2 host (Docker,
	// Kubernetes today): its cgroup is the root of what it sees.
	v2Mounts = "25 20 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
	// This machine's layout: cgroup v1 controllers, cgroup2 mounted beside
	// them with no controller (hybrid).
	hybridMounts = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	hybridGroups = "9:name=systemd:/\n4:memory:/process_api/23e8\n1:cpu:/\n0::/\n"
)

func TestContainerMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  uint64 // 0: no limit
	}{
		{"v2 container", map[string]string{
			"proc/self/cgroup":          "0::/\n",
			"proc/self/mountinfo":       v2Mounts,
			"sys/fs/cgroup/memory.max":  "536870912\n",
			"sys/fs/cgroup/memory.high": "max\n",
		}, 512 << 20},
		{"v2 unlimited", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"proc/self/mountinfo":      v2Mounts,
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0},
		{"v2 root cgroup (no memory.max)", map[string]string{
			"proc/self/cgroup":    "0::/\n",
			"proc/self/mountinfo": v2Mounts,
		}, 0},
		{"v2 nested: the parent's limit is smaller", map[string]string{
			"proc/self/cgroup":                              "0::/app.slice/es.service\n",
			"proc/self/mountinfo":                           v2Mounts,
			"sys/fs/cgroup/app.slice/memory.max":            "1073741824\n",
			"sys/fs/cgroup/app.slice/es.service/memory.max": "max\n",
		}, 1 << 30},
		{"v2 nested: the leaf's limit is smaller", map[string]string{
			"proc/self/cgroup":                              "0::/app.slice/es.service\n",
			"proc/self/mountinfo":                           v2Mounts,
			"sys/fs/cgroup/app.slice/memory.max":            "1073741824\n",
			"sys/fs/cgroup/app.slice/es.service/memory.max": "268435456\n",
		}, 256 << 20},
		{"v1 limit", map[string]string{
			"proc/self/cgroup":    hybridGroups,
			"proc/self/mountinfo": hybridMounts,
			"sys/fs/cgroup/memory/process_api/23e8/memory.limit_in_bytes": "2147483648\n",
			"sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":      "9223372036854771712\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                  "9223372036854771712\n",
		}, 2 << 30},
		{"v1 unlimited (this machine)", map[string]string{
			"proc/self/cgroup":    hybridGroups,
			"proc/self/mountinfo": hybridMounts,
			"sys/fs/cgroup/memory/process_api/23e8/memory.limit_in_bytes": "9223372036854771712\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                  "9223372036854771712\n",
		}, 0},
		{"v1 in a container without its own namespace: the host's path is not there", map[string]string{
			"proc/self/cgroup":                           "4:memory:/docker/abc\n",
			"proc/self/mountinfo":                        "34 30 0:31 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "805306368\n",
		}, 768 << 20},
		{"no cgroup files", map[string]string{}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := containerMemoryLimit(cgroupFixture(t, tt.files))
			if ok != (tt.want != 0) || got != tt.want {
				t.Errorf("containerMemoryLimit = %d, %v; want %d, %v", got, ok, tt.want, tt.want != 0)
			}
		})
	}
}

// On this machine: what the real /proc and /sys say agrees with reading
// the process's own memory cgroup file directly, and the default follows.
func TestContainerMemoryLimitHere(t *testing.T) {
	limit, ok := containerMemoryLimit("")
	t.Logf("container memory limit: %d (%v); max_memory default %d", limit, ok, defaultMaxMemory())
	want := defaultMaxMemoryNoLimit
	if ok {
		want = int(limit / 2)
	}
	if got := Default().Lua.MaxMemory; got != want {
		t.Errorf("Default().Lua.MaxMemory = %d, want %d", got, want)
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if parts := strings.SplitN(line, ":", 3); len(parts) == 3 && hasController(parts[1], "memory") {
			direct, dok := readCgroupLimit(filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"))
			if dok && (!ok || limit > direct) {
				t.Errorf("the process's cgroup says %d, containerMemoryLimit %d, %v", direct, limit, ok)
			}
		}
	}
}
