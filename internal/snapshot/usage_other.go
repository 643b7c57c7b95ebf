//go:build !unix

package snapshot

import "os"

// diskUsage returns fi's size: without st_blocks there is no portable way
// to see holes, so a sparse file counts at its full size.
func diskUsage(fi os.FileInfo) int64 { return fi.Size() }
