package broker

import "sync"

// Bounds of a Redis broker's value cache (valueCache).
const (
	cacheMaxKeys  = 10_000
	cacheMaxValue = 16 << 10 // a longer value is not cached
	cacheMaxBytes = 32 << 20 // keys and values together
)

// valueCache holds, per entity key, the value a Redis broker last read
// from or wrote to Redis (or that the entity was absent), so that Update
// can skip its GET: the compare-and-set checks the value anyway, and on a
// mismatch it answers with the current one. An entry is only a guess:
// another instance, another program or a concurrent Update of this broker
// may have changed the entity since. A wrong guess costs a conflict, never
// a wrong result.
//
// An entry is trusted until a guess from it turns out wrong: then Update
// reads the entity first (GET) again, as without a cache, until a read
// finds the entity as the entry has it. So a key that other instances
// write between this broker's updates costs what it did before the cache
// (GET, then compare-and-set) rather than a lost compare-and-set and a
// second run of the update function each time.
//
// It holds at most cacheMaxKeys entries and cacheMaxBytes of keys and
// values, values up to cacheMaxValue bytes; when full, an arbitrary entry
// makes room. Safe for concurrent use.
type valueCache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry
	bytes   int // len(key) + len(value) of every entry
}

type cacheEntry struct {
	value   string // the entity's JSON; "" when absent
	exists  bool   // false: the entity was absent
	trusted bool   // Update may skip its GET
}

// get returns the entry of key and whether there is one.
func (c *valueCache) get(key string) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

// put records value (nil: absent) as key's value.
func (c *valueCache) put(key string, value []byte, trusted bool) {
	if len(value) > cacheMaxValue {
		c.drop(key)
		return
	}
	e := cacheEntry{value: string(value), exists: value != nil, trusted: trusted}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		c.bytes -= len(key) + len(old.value)
		delete(c.entries, key)
	}
	size := len(key) + len(e.value)
	for k, old := range c.entries { // an arbitrary entry makes room
		if len(c.entries) < cacheMaxKeys && c.bytes+size <= cacheMaxBytes {
			break
		}
		c.bytes -= len(k) + len(old.value)
		delete(c.entries, k)
	}
	if c.entries == nil {
		c.entries = make(map[string]cacheEntry)
	}
	c.entries[key] = e
	c.bytes += size
}

// drop forgets key's value.
func (c *valueCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		c.bytes -= len(key) + len(old.value)
		delete(c.entries, key)
	}
}

// len returns the number of entries and their size in bytes.
func (c *valueCache) len() (entries, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

// current returns e's value as Update passes it to the update function: a
// copy (the function may keep or change it), nil when absent.
func (e cacheEntry) current() []byte {
	if !e.exists {
		return nil
	}
	return append([]byte{}, e.value...)
}

// same reports whether e holds value (nil: absent).
func (e cacheEntry) same(value []byte) bool {
	return e.exists == (value != nil) && e.value == string(value)
}
