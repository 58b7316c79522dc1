/*
 * journal.h - the provisioning step journal (docs/provisioning.md, "Steps").
 *
 * One JSON object a line, appended and fsync'd before the step it records
 * goes on: {"step":"volume","state":"start","time":"2026-12-03T07:00:00Z",
 * "device":"/dev/vdb"}.  A step is done when a "done" line for it follows
 * its last "start".  Values are short facts (a device path, a digest),
 * never a secret.
 *
 * Read strictly: every complete line must be such an object; only the last
 * line may be torn (the process killed in the middle of a write), and it
 * is cut off when the journal is opened.  Anything else refuses the journal
 * (it is not ours, or it was edited): provisioning stops rather than guess
 * which steps ran.
 *
 * Before the data volume has a file system the journal is a small file on
 * the run-time state directory; kwp_journal_move carries it (every line)
 * onto the volume, which from then on holds it.
 */
#ifndef KWP_JOURNAL_H
#define KWP_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "../server/common/result.h"

#define KWP_JOURNAL_MAX (256u * 1024u)   /* bytes: far more than any run writes */

struct kwp_journal;

/* Opens (creating, mode 0600) the journal at path. */
KW_MUST_USE kw_result kwp_journal_open(const char *path, struct kwp_journal **ret);
void kwp_journal_close(struct kwp_journal *j);
const char *kwp_journal_path(const struct kwp_journal *j);

/* Appends {"step":step,"state":state,"time":now, kv[0]:kv[1], ...} (kv is
 * NULL-terminated pairs; NULL kv: none) and fsyncs it. */
KW_MUST_USE kw_result kwp_journal_record(struct kwp_journal *j, const char *step, const char *state,
                                         const char *const *kv);

bool kwp_journal_done(const struct kwp_journal *j, const char *step);
bool kwp_journal_started(const struct kwp_journal *j, const char *step);   /* and not done */
/* The value of `field` in the last line recorded for `step` that has it,
 * or NULL. */
const char *kwp_journal_get(const struct kwp_journal *j, const char *step, const char *field);
/* The time of the step's last line ("" when none). */
const char *kwp_journal_time(const struct kwp_journal *j, const char *step);

/* Writes every line to a new file at path (its directory exists), fsyncs
 * it and its directory, then appends there; the old file is left as it is
 * (the caller removes it).  A journal already at path with the same lines
 * as a prefix of ours (a move interrupted) is replaced. */
KW_MUST_USE kw_result kwp_journal_move(struct kwp_journal *j, const char *path);

#endif
