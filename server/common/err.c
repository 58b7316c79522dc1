/* err.c - error names, strings, thread-local detail and trace. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "result.h"

struct err_row {
        int code;
        const char *name;
        const char *text;
};

static const struct err_row err_table[] = {
        { KW_ERR_NONE, "ok", "success" },
        { KW_ERR_INPUT, "invalid_input", "invalid input" },
        { KW_ERR_TRUNCATED, "truncated", "input ended early" },
        { KW_ERR_TOO_LARGE, "too_large", "input too large" },
        { KW_ERR_BAD_ENCODING, "bad_encoding", "invalid encoding" },
        { KW_ERR_BAD_JSON, "bad_json", "malformed JSON" },
        { KW_ERR_BAD_NAME, "bad_name", "invalid name" },
        { KW_ERR_BAD_LENGTH, "bad_length", "invalid input length for the algorithm" },
        { KW_ERR_UNSUPPORTED_ALG, "unsupported_algorithm", "unsupported algorithm for this key" },
        { KW_ERR_CONFIG, "config", "invalid configuration" },
        { KW_ERR_MISSING_FIELD, "missing_field", "a required field is missing" },
        { KW_ERR_BAD_FIELD, "bad_field", "a field has an invalid type or value" },
        { KW_ERR_UNSUPPORTED, "unsupported", "not supported" },
        { KW_ERR_AUTH, "unauthenticated", "authentication failed" },
        { KW_ERR_FORBIDDEN, "forbidden", "not allowed for this role" },
        { KW_ERR_ACCESS_DENIED, "access_denied", "denied by the key's access rules" },
        { KW_ERR_CSRF, "csrf", "missing or wrong CSRF token, or a cross-site request" },
        { KW_ERR_LOCKED, "locked", "too many failed sign-ins: the account is locked" },
        { KW_ERR_NOT_FOUND, "not_found", "no such key" },
        { KW_ERR_EXISTS, "exists", "the name is already in use" },
        { KW_ERR_NO_ROUTE, "no_route", "no such path" },
        { KW_ERR_KEY_DISABLED, "key_disabled", "the key is disabled" },
        { KW_ERR_KEY_PENDING_DELETION, "key_pending_deletion", "the key is pending deletion" },
        { KW_ERR_KEY_DESTROYED, "key_destroyed", "the key is destroyed" },
        { KW_ERR_OP_NOT_ALLOWED, "operation_not_allowed", "the key does not allow this operation" },
        { KW_ERR_BAD_STATE, "bad_state", "the key's state does not allow this change" },
        { KW_ERR_SEALED, "sealed", "the key store is sealed" },
        { KW_ERR_CRYPTO, "crypto", "cryptographic failure" },
        { KW_ERR_DECRYPT, "decrypt_failed", "decryption failed" },
        { KW_ERR_RANDOM, "random", "no randomness available" },
        { KW_ERR_STORAGE, "storage", "database error" },
        { KW_ERR_DB_KEY_MISMATCH, "db_key_mismatch", "the database key does not match this database" },
        { KW_ERR_DB_CORRUPT, "db_corrupt", "the database is damaged" },
        { KW_ERR_IO, "io", "file system error" },
        { KW_ERR_DB_VERSION, "db_version", "the database schema is newer than this program" },
        { KW_ERR_DB_UNAVAILABLE, "db_unavailable", "the database cannot be reached" },
        { KW_ERR_DB_TAMPERED, "db_tampered", "a database row was changed outside keyward" },
        { KW_ERR_HSM, "hsm", "HSM error" },
        { KW_ERR_HSM_UNAVAILABLE, "hsm_unavailable", "the HSM is unreachable" },
        { KW_ERR_HSM_TIMEOUT, "hsm_timeout", "the HSM did not answer in time" },
        { KW_ERR_HSM_PIN, "hsm_pin", "the HSM rejected the PIN" },
        { KW_ERR_HSM_MODULE, "hsm_module", "the PKCS#11 module cannot be loaded" },
        { KW_ERR_HSM_TOKEN, "hsm_token", "no HSM token with that label" },
        { KW_ERR_HSM_NO_MASTER_KEY, "hsm_no_master_key", "the master key is missing from the HSM" },
        { KW_ERR_HSM_MECHANISM, "hsm_mechanism", "the HSM lacks a required mechanism" },
        { KW_ERR_HSM_UNWRAP, "hsm_unwrap", "the master key cannot unwrap this data" },
        { KW_ERR_TPM, "tpm", "TPM error" },
        { KW_ERR_TPM_POLICY, "tpm_policy", "the PCRs differ from those sealed to" },
        { KW_ERR_TPM_SIGNATURE, "tpm_signature", "the PCR policy's signature does not hold" },
        { KW_ERR_SNP, "snp", "SEV-SNP error" },
        { KW_ERR_SNP_TCB, "snp_tcb", "the platform's TCB is below the pinned one" },
        { KW_ERR_LUKS_NOT_LUKS2, "luks_not_luks2", "not a LUKS2 volume" },
        { KW_ERR_LUKS_TAMPERED, "luks_tampered", "the LUKS2 header fails a check" },
        { KW_ERR_DEVICE, "device", "device missing or unreadable" },
        { KW_ERR_INTERNAL, "internal", "internal error" },
        { KW_ERR_NOMEM, "nomem", "out of memory" },
        { KW_ERR_OVERLOAD, "overload", "too many requests" },
        { KW_ERR_CUSTODY_DOWN, "custody_down", "the key custody process is not answering" },
        { KW_ERR_PROTOCOL, "protocol", "malformed internal message" },
};

static const struct err_row *err_find(int code)
{
        for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
                if (err_table[i].code == code)
                        return &err_table[i];
        return NULL;
}

const char *kw_err_name(int code)
{
        const struct err_row *r = err_find(code);
        return r ? r->name : "unknown";
}

const char *kw_strerror(int code)
{
        const struct err_row *r = err_find(code);
        return r ? r->text : "unknown error";
}

/* 512: a start-up detail names paths and the fix; a detail sent to the front
 * in a custody reply is cut at 256 bytes there (KW_T_DETAIL). */
static __thread char detail_buf[512];
static __thread char trace_buf[96];

/* Formatted aside first: a detail that quotes the previous one
 * (kw_err_set_detail("...: %s", kw_err_detail())) reads it whole. */
/* Formatted aside first: a detail that quotes the previous one reads it whole. */
static void set_detail_v(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void set_detail_v(const char *fmt, va_list ap)
{
        char tmp[sizeof detail_buf];
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        memcpy(detail_buf, tmp, sizeof detail_buf);
}

void kw_err_set_detail(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        set_detail_v(fmt, ap);
        va_end(ap);
}

kw_result kw_fail_at(int code, const char *file, int line, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        set_detail_v(fmt, ap);
        va_end(ap);
        kw_trace(code, file, line);
        return KW_RESULT(code);
}

const char *kw_err_detail(void) { return detail_buf; }

void kw_err_clear_detail(void) { detail_buf[0] = '\0'; }

void kw_trace(int code, const char *file, int line)
{
        const char *base = strrchr(file, '/');
        snprintf(trace_buf, sizeof trace_buf, "%s:%d %s", base ? base + 1 : file, line,
                 kw_err_name(code));
}

const char *kw_trace_last(void) { return trace_buf; }
