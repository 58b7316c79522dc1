/*
 * unlock_record.c - the unlock record (unlock_record.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "unlock_record.h"

const char *kwu_binding_name(enum kwu_token_type t)
{
        return t == KWU_TOKEN_SYSTEMD_RECOVERY ? "recovery"
               : t == KWU_TOKEN_KEYWARD_SNP    ? "snp"
                                               : "tpm2";
}

static char *record_text(const char *device, const char *name, const char *binding,
                         const struct kwu_layout *l, time_t now)
{
        cJSON *d = cJSON_CreateObject();
        cJSON *arr = d != NULL ? cJSON_AddArrayToObject(d, "bindings_enrolled") : NULL;
        if (arr == NULL) {
                cJSON_Delete(d);
                return NULL;
        }
        static const enum kwu_token_type order[] = { KWU_TOKEN_SYSTEMD_TPM2, KWU_TOKEN_KEYWARD_SNP,
                                                     KWU_TOKEN_SYSTEMD_RECOVERY };
        for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
                for (unsigned i = 0; i < l->ntokens; i++)
                        if (l->tokens[i].type == order[k]) {
                                cJSON_AddItemToArray(arr, cJSON_CreateString(kwu_binding_name(order[k])));
                                break;
                        }
        struct tm tm;
        gmtime_r(&now, &tm);
        char t[64];
        snprintf(t, sizeof t, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cJSON_AddNumberToObject(d, "version", 1);
        cJSON_AddStringToObject(d, "device", device);
        if (name != NULL)
                cJSON_AddStringToObject(d, "name", name);
        cJSON_AddStringToObject(d, "binding", binding);
        cJSON_AddStringToObject(d, "time", t);
        char *s = cJSON_PrintUnformatted(d);
        cJSON_Delete(d);
        return s;
}

kw_result kwu_unlock_record_write(const char *path, const char *device, const char *name,
                                  const char *binding, const struct kwu_layout *l, time_t now)
{
        KW_ENSURE(path != NULL && path[0] == '/' && device != NULL && binding != NULL && l != NULL,
                  KW_ERR_INPUT);
        char dir[4096], tmp[4096 + 16];
        int n = snprintf(dir, sizeof dir, "%s", path);
        KW_ENSURE(n > 0 && (size_t)n < sizeof dir, KW_ERR_TOO_LARGE);
        char *slash = strrchr(dir, '/');
        *slash = '\0';
        if (dir[0] != '\0') {
                if (mkdir(dir, 0755) == 0) {
                        /* 0755 whatever the umask (the provisioning unit's is 0077): the
                         * directory also holds the custody socket the front connects to */
                        if (chmod(dir, 0755) != 0)
                                return KW_FAIL(KW_ERR_IO, "cannot chmod %s: %s", dir, strerror(errno));
                } else if (errno != EEXIST) {
                        return KW_FAIL(KW_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
                }
        }
        snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
        char *text = record_text(device, name, binding, l, now);
        KW_ENSURE(text != NULL, KW_ERR_NOMEM);
        int fd = mkstemp(tmp);
        kw_result r = KW_OK;
        if (fd < 0) {
                r = KW_FAIL(KW_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        } else {
                size_t len = strlen(text);
                ssize_t w = write(fd, text, len);
                if (w != (ssize_t)len || write(fd, "\n", 1) != 1 || fchmod(fd, 0644) != 0 ||
                    fsync(fd) != 0)
                        r = KW_FAIL(KW_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
                if (close(fd) != 0 && kw_ok(r))
                        r = KW_FAIL(KW_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
                if (kw_ok(r) && rename(tmp, path) != 0)
                        r = KW_FAIL(KW_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
                if (!kw_ok(r))
                        unlink(tmp);
        }
        free(text);
        return r;
}
