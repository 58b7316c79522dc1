/*
 * err.h - Keyward's one error table.
 *
 * Stable negative codes grouped by category.  They are mapped to protocol
 * errors (EKM code, XKS errorName, HTTP status) in exactly one function per
 * protocol, at the HTTP edge.  Never renumber: the values cross the
 * front<->custody socket and appear in logs.
 */
#ifndef KW_ERR_H
#define KW_ERR_H

enum kw_err {
        KW_ERR_NONE = 0,

        /* input: the request or the configuration is wrong */
        KW_ERR_INPUT = -100,          /* generic invalid input */
        KW_ERR_TRUNCATED = -101,      /* bytes ended before a field did */
        KW_ERR_TOO_LARGE = -102,      /* over a hard size cap */
        KW_ERR_BAD_ENCODING = -103,   /* bad base64/base64url/UTF-8/hex */
        KW_ERR_BAD_JSON = -104,       /* malformed JSON, duplicate key, nesting */
        KW_ERR_BAD_NAME = -105,       /* key/token/prefix name alphabet or length */
        KW_ERR_BAD_LENGTH = -106,     /* input length wrong for the algorithm */
        KW_ERR_UNSUPPORTED_ALG = -107,/* unknown algorithm, or wrong for key type */
        KW_ERR_CONFIG = -108,         /* invalid configuration */
        KW_ERR_MISSING_FIELD = -109,  /* a required field is absent */
        KW_ERR_BAD_FIELD = -110,      /* a field has the wrong type or value */
        KW_ERR_UNSUPPORTED = -111,    /* valid but beyond what we support (size) */

        /* auth */
        KW_ERR_AUTH = -200,           /* authentication failed */
        KW_ERR_FORBIDDEN = -201,      /* authenticated, role does not allow */
        KW_ERR_ACCESS_DENIED = -202,  /* a per-key rule denied the caller */
        KW_ERR_CSRF = -203,           /* a session's change without its CSRF token,
                                         or a cross-site request (403) */
        KW_ERR_LOCKED = -204,         /* the account is locked after failed sign-ins
                                         (429 with Retry-After) */

        /* not found / conflict */
        KW_ERR_NOT_FOUND = -300,      /* no such key (or version) */
        KW_ERR_EXISTS = -301,         /* name already taken */
        KW_ERR_NO_ROUTE = -302,       /* no such path */

        /* state */
        KW_ERR_KEY_DISABLED = -400,
        KW_ERR_KEY_PENDING_DELETION = -401,
        KW_ERR_KEY_DESTROYED = -402,
        KW_ERR_OP_NOT_ALLOWED = -403, /* key usage excludes the operation */
        KW_ERR_BAD_STATE = -404,      /* state transition not allowed */
        KW_ERR_SEALED = -405,         /* key store not open / not provisioned */

        /* crypto */
        KW_ERR_CRYPTO = -500,         /* a primitive failed unexpectedly */
        KW_ERR_DECRYPT = -501,        /* integrity check / padding failed */
        KW_ERR_RANDOM = -502,         /* no randomness */

        /* storage */
        KW_ERR_STORAGE = -600,        /* database error */
        KW_ERR_DB_KEY_MISMATCH = -601,/* database key does not open the file */
        KW_ERR_DB_CORRUPT = -602,
        KW_ERR_IO = -603,             /* file system error */
        KW_ERR_DB_VERSION = -604,     /* schema newer than this binary */
        KW_ERR_DB_UNAVAILABLE = -605, /* the (fleet) database cannot be reached */
        KW_ERR_DB_TAMPERED = -606,    /* a row fails its MAC: changed outside keyward */

        /* hsm */
        KW_ERR_HSM = -700,            /* PKCS#11 failure not otherwise listed */
        KW_ERR_HSM_UNAVAILABLE = -701,/* HSM unreachable / device removed */
        KW_ERR_HSM_TIMEOUT = -702,    /* HSM did not answer in time */
        KW_ERR_HSM_PIN = -703,        /* PIN wrong or locked */
        KW_ERR_HSM_MODULE = -704,     /* module cannot be loaded */
        KW_ERR_HSM_TOKEN = -705,      /* no token with that label */
        KW_ERR_HSM_NO_MASTER_KEY = -706,
        KW_ERR_HSM_MECHANISM = -707,  /* module lacks a needed mechanism */
        KW_ERR_HSM_UNWRAP = -708,     /* master key cannot unwrap a blob */

        /* tpm (wave 2) */
        KW_ERR_TPM = -800,
        KW_ERR_TPM_POLICY = -801,       /* the TPM's PCRs are not the ones sealed to */
        KW_ERR_TPM_SIGNATURE = -802,    /* a signed PCR policy's signature does not hold */
        KW_ERR_SNP = -803,              /* no SEV-SNP guest device, or its request failed */
        KW_ERR_SNP_TCB = -804,          /* the firmware is below the pinned TCB (or SVN) */

        /* the data volume (keyward-unlock) */
        KW_ERR_LUKS_NOT_LUKS2 = -1000,  /* no LUKS2 header, or one we cannot read */
        KW_ERR_LUKS_TAMPERED = -1001,   /* the header fails a check: refused before use */
        KW_ERR_DEVICE = -1002,          /* the device is missing or unreadable */

        /* internal */
        KW_ERR_INTERNAL = -900,
        KW_ERR_NOMEM = -901,
        KW_ERR_OVERLOAD = -902,       /* rate limit or connection limit */
        KW_ERR_CUSTODY_DOWN = -903,   /* front cannot reach the custody process */
        KW_ERR_PROTOCOL = -904,       /* malformed front<->custody message */
};

/* Stable short identifier, e.g. "KW_ERR_NOT_FOUND" -> "not_found".  Never NULL. */
const char *kw_err_name(int code);
/* Human sentence for the code, e.g. "no such key".  Never NULL. */
const char *kw_strerror(int code);

/*
 * Thread-local detail for the last failure: a short, non-secret sentence
 * that makes an error actionable ("no token labelled 'x' in module y").
 * Library code sets it where it has context; the caller that logs reads it.
 */
void kw_err_set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *kw_err_detail(void);   /* "" when none */
void kw_err_clear_detail(void);

/* Debug trace of the last KW_BAIL site in this thread (file:line). */
void kw_trace(int code, const char *file, int line);
const char *kw_trace_last(void);

#endif
