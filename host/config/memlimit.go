package config

// The default of [lua] max_memory: a share of the memory limit of the
// container the server runs in, when it has one. A container is a cgroup;
// its limit is memory.max (cgroup v2) or memory.limit_in_bytes (v1) of the
// process's cgroup or of one above it, whichever is smallest.

import (
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
)

// defaultMaxMemoryNoLimit is max_memory where no container limit is found.
const defaultMaxMemoryNoLimit = 1 << 30

// defaultMaxMemory is max_memory's default: half the container's memory
// limit, else 1 GiB. Half leaves the other half for what is not Lua's
// (connections, buffers, the runtime), for the memory guard's margin
// (luabridge/limits_memory.go) and for garbage not yet collected.
var defaultMaxMemory = sync.OnceValue(func() int {
	if limit, ok := containerMemoryLimit(""); ok {
		return int(min(limit/2, 1<<62))
	}
	return defaultMaxMemoryNoLimit
})

// containerMemoryLimit returns the memory limit of the cgroups this process
// is in, and whether there is one. root is put before every path it reads:
// "" reads this machine's /proc and /sys, a test gives a folder laid out
// like them.
func containerMemoryLimit(root string) (uint64, bool) {
	groups, err := os.ReadFile(root + "/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	mounts, err := os.ReadFile(root + "/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	// The process's cgroup in each hierarchy: "0::/path" (v2) and
	// "N:memory,...:/path" (v1).
	var v2Path, v1Path string
	var hasV2, hasV1 bool
	for _, line := range strings.Split(string(groups), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path, hasV2 = parts[2], true
		case hasController(parts[1], "memory"):
			v1Path, hasV1 = parts[2], true
		}
	}
	var limit uint64
	found := false
	take := func(l uint64, ok bool) {
		if ok && (!found || l < limit) {
			limit, found = l, true
		}
	}
	// Where each hierarchy is mounted: "id parent dev root mountpoint
	// options [optional...] - fstype source superoptions".
	for _, line := range strings.Split(string(mounts), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		mountRoot, mountPoint := unescapeMount(f[3]), unescapeMount(f[4])
		switch {
		case g[0] == "cgroup2" && hasV2:
			take(cgroupLimit(root+mountPoint, mountRoot, v2Path, "memory.max"))
		case g[0] == "cgroup" && hasV1 && hasController(g[2], "memory"):
			take(cgroupLimit(root+mountPoint, mountRoot, v1Path, "memory.limit_in_bytes"))
		}
	}
	return limit, found
}

// cgroupLimit reads file in the cgroup at cgPath of the hierarchy mounted
// at mountPoint (whose root is mountRoot) and in every cgroup above it up
// to the mount, and returns the smallest limit found.
func cgroupLimit(mountPoint, mountRoot, cgPath, file string) (uint64, bool) {
	cgPath, mountRoot = path.Clean(cgPath), path.Clean(mountRoot)
	rel, ok := strings.CutPrefix(cgPath, mountRoot)
	if !ok || mountRoot != "/" && rel != "" && rel[0] != '/' {
		rel = "" // not under the mount's root (another cgroup namespace): the mount is ours
	}
	dir := path.Join(mountPoint, rel)
	if _, err := os.Stat(dir); err != nil {
		dir = mountPoint
	}
	var limit uint64
	found := false
	for {
		if l, ok := readCgroupLimit(path.Join(dir, file)); ok && (!found || l < limit) {
			limit, found = l, true
		}
		if dir == mountPoint || len(dir) <= len(mountPoint) {
			return limit, found
		}
		dir = path.Dir(dir)
	}
}

// readCgroupLimit reads a limit file: a number of bytes, or "max" (v2) or a
// number near 2^63 (v1) for none.
func readCgroupLimit(file string) (uint64, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || n >= 1<<62 || n == 0 {
		return 0, false
	}
	return n, true
}

// hasController reports whether the comma-separated list names c.
func hasController(list, c string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == c {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (a space is \040).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
