/*
 * fsync_dir.h - the last step of writing a file durably (temp file, fsync,
 * rename): syncing the directory that holds it, so that the rename itself
 * survives a crash.
 */
#ifndef KW_FSYNC_DIR_H
#define KW_FSYNC_DIR_H

/* fsync()s the directory holding path ("." for a bare name, "/" for
 * "/name"); best effort: a directory that cannot be opened or synced is
 * left as it is (the file itself was synced before its rename). */
void kw_fsync_parent(const char *path);

#endif
