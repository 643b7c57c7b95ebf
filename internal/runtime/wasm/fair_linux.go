package wasm

import (
	goruntime "runtime"
	"syscall"
)

// Where the process may raise a thread's priority back (root, or
// CAP_SYS_NICE), a long runner holding a slot also runs its thread at the
// lowest priority, nice 19: the core it spins on is then the operating
// system's to give to any other runnable thread of the machine (the node's
// own, a load balancer's) the moment one wakes, not only at the end of a
// time slice. Without that right the thread could not come back to normal
// priority, so Frost does not lower it.

// niceLong is the nice value of a long runner's thread.
const niceLong = 19

// reniceBase probes whether this process can lower a thread's priority and
// raise it back; it returns the threads' normal nice value and true if so.
// The probe runs on a thread of its own that ends with it.
func reniceBase() (int, bool) {
	type result struct {
		base int
		ok   bool
	}
	c := make(chan result)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread exits with this goroutine
		tid := syscall.Gettid()
		raw, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err != nil {
			c <- result{}
			return
		}
		base := 20 - raw // the kernel answers 20 - nice
		ok := base < niceLong &&
			syscall.Setpriority(syscall.PRIO_PROCESS, tid, niceLong) == nil &&
			syscall.Setpriority(syscall.PRIO_PROCESS, tid, base) == nil
		c <- result{base, ok}
	}()
	r := <-c
	return r.base, r.ok
}

// lower locks the calling goroutine to its thread and lowers the thread's
// priority; it reports whether it did.
func (f *fair) lower() bool {
	if !f.renice.Load() {
		return false
	}
	goruntime.LockOSThread()
	if syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), niceLong) != nil {
		goruntime.UnlockOSThread()
		return false
	}
	return true
}

// raise undoes lower. If the priority cannot be raised back, the goroutine
// keeps its thread (which ends with it) rather than hand a low-priority
// thread back to the Go scheduler, and renicing stops.
func (f *fair) raise() {
	if syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), f.niceBase) != nil {
		f.renice.Store(false)
		return
	}
	goruntime.UnlockOSThread()
}
