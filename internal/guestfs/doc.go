// Package guestfs is the writable file system a Wasm guest sees at "/": a
// private, size-capped tree held in memory and reset to a snapshot between
// requests.
//
// # One tree per instance
//
// Every guest instance gets its own FS, mounted through wazero's
// experimental sys API. Nothing in it refers to the host: there is no path
// through which a guest could name a host file, so there is nothing to
// escape from and no path-sanitising to get wrong. "../.." at the top is "/"
// again, as on POSIX, and /etc/passwd simply does not exist unless the app's
// own image put it there.
//
// # Images and copy-on-write
//
// An Image is an immutable tree. The live tree is an Image (its base)
// overlaid with a small map of the inodes changed since: reading an inode
// looks in the overlay, then in the base; changing one first copies it into
// the overlay. File data is kept in 64 KiB chunks shared between the copy
// and the Image, and a chunk is copied only when it is written; so changing
// one byte of a large file costs one chunk, and the Image never changes.
//
// That makes the per-request cycle cheap:
//
//   - Snapshot folds the overlay into a new Image in O(inodes), sharing all
//     the data; or returns the current one when nothing changed.
//   - Reset drops the overlay and points at the Image again: O(changes), and
//     a few nanoseconds when the tree is clean, which is the common case.
//   - MarshalBinary writes an Image in a deterministic form for disk, and
//     UnmarshalImage reads it back, checking every byte, since a snapshot
//     file is input Frost did not write in this process.
//
// # Caps
//
// The sum of the sizes of the tree's files may not pass Options.CapBytes and
// the count of its inodes may not pass Options.MaxInodes. A write, truncate
// or create that would pass either is refused whole with ENOSPC; a refused
// write leaves the file as it was. (wazero v1.12 has no ENOSPC errno, so a
// guest sees EIO; the host sees this package's ENOSPC.)
//
// # Handles and generations
//
// Reset bumps the FS's generation, and a handle opened in an older one is
// stale: every call fails with EBADF and nothing it does can reach the new
// tree. Handles on "/" are the exception: wazero opens "/" once per module as
// its pre-opened directory and keeps it for the module's life, and every
// guest path resolves through it; so those survive Reset and see the new
// tree, and OpenFiles does not count them. OpenFiles counts every other
// handle open since the last Reset, so the host can spot a guest that left
// descriptors open between requests.
//
// # Semantics
//
// The FS follows POSIX and Linux where wazero's sys API leaves room. Where
// it departs, it is to stay small and deterministic:
//
//   - No symbolic or hard links: Symlink and Link return ENOSYS, Readlink
//     returns EINVAL for any existing path, O_NOFOLLOW changes nothing. Every
//     file has exactly one name and an Image is a plain tree.
//   - Permission bits are stored (Chmod, the perm of a create) and reported,
//     never enforced: the guest owns everything, like root. The handle's
//     access mode (O_RDONLY, O_WRONLY, O_RDWR) is enforced.
//   - Times come from Options.Clock. Writes set mtime and ctime; metadata
//     changes set ctime; entry changes set the directory's mtime and ctime.
//     Reads never set atime (as with noatime), so reading never dirties the
//     tree. Utimens sets any time, UTIME_OMIT keeps one.
//   - A file unlinked while open stays readable and writable through its
//     handles, and still counts against the caps, until its last Close.
//   - Directory listings come sorted by name.
//
// # Concurrency
//
// An FS belongs to one instance. One mutex guards it, and each method says
// when it may be called; every File it returns takes the same mutex.
package guestfs
