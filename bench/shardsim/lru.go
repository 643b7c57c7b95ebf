package main

// lru is the set of apps one node holds warm, at most size of them; making
// another app warm evicts the least recently used.
type lru struct {
	size int
	slot map[int32]int32 // app → its slot
	// Slots 1..size hold apps in a doubly linked list, most recent first;
	// slot 0 is the list's sentinel.
	app        []int32
	prev, next []int32
}

func newLRU(size int) *lru {
	return &lru{
		size: size,
		slot: make(map[int32]int32, size),
		app:  make([]int32, 1, size+1),
		prev: make([]int32, 1, size+1),
		next: make([]int32, 1, size+1),
	}
}

// touch serves a request for app: warm reports whether app was warm
// already; if not, it is now, and evicted reports whether another app made
// room for it.
func (c *lru) touch(app int32) (warm, evicted bool) {
	if s, ok := c.slot[app]; ok {
		c.unlink(s)
		c.pushFront(s)
		return true, false
	}
	var s int32
	if len(c.slot) < c.size {
		c.app = append(c.app, 0)
		c.prev = append(c.prev, 0)
		c.next = append(c.next, 0)
		s = int32(len(c.app) - 1)
	} else {
		s = c.prev[0] // the least recently used
		c.unlink(s)
		delete(c.slot, c.app[s])
		evicted = true
	}
	c.app[s] = app
	c.slot[app] = s
	c.pushFront(s)
	return false, evicted
}

func (c *lru) unlink(s int32) {
	c.next[c.prev[s]] = c.next[s]
	c.prev[c.next[s]] = c.prev[s]
}

func (c *lru) pushFront(s int32) {
	c.prev[s], c.next[s] = 0, c.next[0]
	c.prev[c.next[0]] = s
	c.next[0] = s
}
