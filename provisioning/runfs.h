/*
 * runfs.h - the files and mounts of a provisioning run (run.c): where
 * everything lives, and writes that survive a kill at any instant (a
 * temporary file, fsync, rename, fsync of the directory).
 */
#ifndef KWP_RUNFS_H
#define KWP_RUNFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../server/common/buf.h"
#include "../server/common/result.h"
#include "../server/config.h"

#define KWP_PATH_MAX 512

struct kwp_paths {
        char data[KWP_PATH_MAX];
        char etc[KWP_PATH_MAX];          /* data/etc                          */
        char conf[KWP_PATH_MAX];         /* data/etc/keyward.toml             */
        char softhsm_conf[KWP_PATH_MAX]; /* data/etc/softhsm2.conf            */
        char tls[KWP_PATH_MAX];          /* data/etc/tls                      */
        char custody[KWP_PATH_MAX];      /* data/custody                      */
        char pin_file[KWP_PATH_MAX];     /* data/custody/hsm.pin              */
        char tokens[KWP_PATH_MAX];       /* data/custody/softhsm/tokens       */
        char prov[KWP_PATH_MAX];         /* data/provision                    */
        char journal[KWP_PATH_MAX];      /* data/provision/journal            */
        char recovery[KWP_PATH_MAX];     /* data/provision/recovery-key       */
        char output[KWP_PATH_MAX];       /* data/provision/first-boot.txt     */
        char xks_import[KWP_PATH_MAX];   /* data/provision/xks-import.json    */
        char state_journal[KWP_PATH_MAX];/* state/journal                     */
        char state_recovery[KWP_PATH_MAX];/* state/recovery-key               */
};

void kwp_paths_init(struct kwp_paths *p, const char *data_dir, const char *state_dir);

/* mkdir -p of the last component only; then mode and owner set. */
KW_MUST_USE kw_result kwp_mkdir(const char *path, mode_t mode, uid_t uid, gid_t gid);
/* Atomic write; a file already there with the same bytes is kept. */
KW_MUST_USE kw_result kwp_write_file(const char *path, const void *p, size_t n, mode_t mode, uid_t uid,
                                     gid_t gid);
/* kwp_write_file with mode 0600 (secrets). */
KW_MUST_USE kw_result kwp_write_secret_file(const char *path, const void *p, size_t n, uid_t uid,
                                            gid_t gid);
/* Reads a small secret file (wiped buffer); KW_ERR_NOT_FOUND when absent. */
KW_MUST_USE kw_result kwp_read_secret_file(const char *path, struct kw_buf *out);
/* Removes a secret file, its bytes overwritten first. */
void kwp_remove_secret_file(const char *path);
/* from -> to (another file system): written, synced, then from removed;
 * done already (to there, from gone) is fine. */
KW_MUST_USE kw_result kwp_move_secret_file(const char *from, const char *to);
/* chown -R (no symbolic link followed). */
KW_MUST_USE kw_result kwp_chown_tree(const char *path, uid_t uid, gid_t gid);

/* A disk this run began formatting: its LUKS2 header (or nothing yet) is
 * zeroed so that enrolling starts again; anything else on it is refused. */
KW_MUST_USE kw_result kwp_wipe_own_header(const char *device);
/* mkfs.ext4 when the device holds no file system. */
KW_MUST_USE kw_result kwp_mkfs_if_blank(const char *device);
/* ext4, nosuid,nodev,noexec, unless already mounted there. */
KW_MUST_USE kw_result kwp_mount_ext4(const char *device, const char *dir);
bool kwp_is_mounted(const char *dir);

/* SoftHSM2's configuration: its tokens under tokendir (made, owned by uid). */
KW_MUST_USE kw_result kwp_softhsm_conf(const char *conf, const char *tokendir, uid_t uid, gid_t gid);

/* keyward.toml as keywardd loads it (no environment). */
KW_MUST_USE kw_result kwp_load_config(const char *path, struct kw_config **ret);

#endif
