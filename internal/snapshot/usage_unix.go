//go:build unix

package snapshot

import (
	"os"
	"syscall"
)

// diskUsage returns the bytes fi's file occupies on disk: its allocated
// blocks, which for a sparse file is far less than its size.
func diskUsage(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
