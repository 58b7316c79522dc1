/*
 * proto.h - the fixed request table between the front and the custody
 * process (version 2).
 *
 * Transport: a SOCK_STREAM Unix socket.  Frame = u32be length | payload,
 * length <= KW_IPC_MAX_FRAME (a length under 8 or over it ends the
 * connection).  Many requests may be in flight on one connection: each
 * reply carries its request's id, and replies come in whatever order
 * custody finishes them (custody_serve.c; the front matches them,
 * custody_client.c).  A request that does not parse still gets a reply,
 * with its id when its header is readable, and KW_ERR_PROTOCOL.
 *   request payload: u8 version | u8 op | u16be 0 | u32be request id | fields
 *   reply payload:   u8 version | u8 op | u16be 0 | u32be request id |
 *                    u32be (int32) code | fields
 *   field: u8 tag | u32be length | bytes      (each tag at most once)
 * Integers inside fields are big-endian u32 (or u64 where noted).  Strings
 * are UTF-8 without NUL.  Every field has a maximum length (kw_tag_max).
 *
 * Who may ask (privilege separation, docs/threat-model.md).  Every request
 * names its caller class (KW_T_CALLER, required: there is no default) and
 * carries that class's proof, which the custody process verifies itself:
 *   PUBLIC  no proof; only the ops marked P below (liveness, counters, the
 *           XKS routing table, attestation evidence: nothing secret).
 *   ADMIN   KW_T_TOKEN, the bearer token as received; custody hashes it and
 *           looks it up; the token's role must be one the op allows.  Or
 *           KW_T_SESSION, a console session id as received (custody keeps
 *           the sessions, docs/api.md "Sessions"), with KW_T_CSRF: every op
 *           not marked read-only in op_table needs the session's CSRF token
 *           (KW_ERR_CSRF otherwise).  Exactly one of TOKEN and SESSION.
 *   XKS     the SigV4 parts (XKS_STORE SIGV4_AKID SIGV4_STS SIGV4_SIG
 *           SIGV4_CREQ BODY): custody checks the signature over the string
 *           to sign, that the string to sign hashes this canonical request,
 *           and that the canonical request is a POST of exactly this body to
 *           this store's path; then it parses the body itself.
 *   EKM     KW_T_EKM_CN (+ KW_T_EKM_PREFIX): the verified client
 *           certificate's subject, asserted by the front; custody accepts
 *           only a CN of [azure_ekm_config] azure_ekm_client_cns, and a key
 *           only when its rules name that CN (or the EKM path prefix).
 * The audit actor is always what custody verified ("token:<id>(<name>)",
 * "xks:<store>:<akid>", "ekm:<cn>"), never a string the front sends.
 *
 * The table below is the whole contract: for each op, who may send it
 * (P public, A admin with the roles given, X xks, E ekm), the fields it
 * takes (R required, O optional) and the fields of a successful reply.  A
 * failed reply carries code < 0 and optionally KW_T_DETAIL (non-secret
 * text) and KW_T_REQUEST_ID.
 */
#ifndef KW_PROTO_H
#define KW_PROTO_H

#include <stdint.h>

#define KW_PROTO_VERSION 2
#define KW_IPC_MAX_FRAME (1024u * 1024u)

enum kw_op {
        KW_OP_PING = 1,          /* P A*  -> - ; JSON {warnings:[code...]} when custody has
                                  *       storage warnings (docs/api.md, /healthz)    */
        KW_OP_STATUS = 2,        /* A*    -> JSON {state, keys, hsm, cache, ...}        */
        KW_OP_STATS = 3,         /* P A*  -> JSON counters (hsm calls, cache hits, ...)  */
        KW_OP_KEY_CREATE = 10,   /* A ko  R NAME KEY_TYPE KEY_SIZE; O OPS TAGS RULES -> JSON key */
        KW_OP_KEY_IMPORT = 11,   /* A ko  R NAME KEY_TYPE MATERIAL MATERIAL_FORMAT; O OPS TAGS
                                  *       RULES -> JSON key.  MATERIAL is the client's text as
                                  *       received (base64 / PEM): custody decodes it, never
                                  *       the front */
        KW_OP_KEY_GET = 12,      /* A* E  R NAME -> JSON key                            */
        KW_OP_KEY_LIST = 13,     /* A*    O LIMIT CURSOR STATE KEY_TYPE TAG NAME_PREFIX -> JSON {keys,next} */
        KW_OP_KEY_SET_STATE = 14,/* A ko  R NAME STATE("enabled"|"disabled") -> JSON key */
        KW_OP_KEY_ROTATE = 15,   /* A ko  R NAME -> JSON key                            */
        KW_OP_KEY_SCHEDULE_DELETE = 16, /* A ko  R NAME; O WAIT_SECONDS -> JSON key     */
        KW_OP_KEY_CANCEL_DELETE = 17,   /* A ko  R NAME -> JSON key                     */
        KW_OP_KEY_UPDATE = 18,   /* A ko  R NAME; O TAGS RULES OPS -> JSON key          */
        KW_OP_WRAP = 22,         /* E     R NAME ALG DATA -> DATA VERSION               */
        KW_OP_UNWRAP = 23,       /* E     R NAME ALG DATA; O VERSION -> DATA VERSION    */
        KW_OP_AUDIT_QUERY = 30,  /* A*    O LIMIT SEQ NAME ACTION ACTOR SINCE UNTIL DESC
                                  *       BEFORE -> JSON {events,next}                 */
        KW_OP_AUDIT_VERIFY = 31, /* A*    -> JSON {ok, rows, first_bad_seq?, first_bad_batch?,
                                  *       reason?, checkpoint?}                          */
        KW_OP_AUDIT_PRUNE = 32,  /* A a   -> JSON {exported:[...], pruned_records, audit}:
                                  *       one retention cycle now (docs/audit.md);
                                  *       KW_ERR_BAD_STATE when none is configured     */
        KW_OP_TOKEN_CHECK = 40,  /* A*    -> JSON {id,name,role}: the caller's own token */
        KW_OP_TOKEN_CREATE = 41, /* A a   R TOKEN_NAME ROLE -> JSON {id,name,role,token} */
        KW_OP_TOKEN_LIST = 42,   /* A a   -> JSON {tokens:[...]}                        */
        KW_OP_TOKEN_REVOKE = 43, /* A a   R TOKEN_ID -> JSON token; the last active
                                  *       admin token cannot be revoked (KW_ERR_BAD_STATE) */
        /* AWS XKS (docs/xks.md) */
        KW_OP_XKS = 50,          /* X     (the SigV4 parts above) -> JSON, the XKS
                                  *       response body; REQUEST_ID (kmsRequestId) also on
                                  *       failure.  Custody routes on the signed path:
                                  *       health, metadata, encrypt, decrypt */
        KW_OP_XKS_STORES = 51,   /* P A*  -> JSON {gen, stores:[{name,uri_prefix,region,service,source,access_key_ids}]} (no secrets) */
        KW_OP_XKS_STORE_CREATE = 52, /* A a  R XKS_STORE XKS_PREFIX; O XKS_REGION -> JSON import file + store */
        KW_OP_XKS_CRED_ROTATE = 53,  /* A a  R XKS_STORE -> JSON import file (new pair; at most 2 kept) */
        KW_OP_XKS_CRED_DELETE = 54,  /* A a  R XKS_STORE SIGV4_AKID -> JSON store        */
        KW_OP_XKS_STORE_DELETE = 55, /* A a  R XKS_STORE -> JSON {deleted}               */
        KW_OP_XKS_IMPORT_FILE = 56,  /* A a  R XKS_STORE -> JSON import file (newest pair) */
        /* attestation (docs/attestation.md): collected here, where the TPM and
         * /dev/sev-guest are, bound to the TLS key custody reads from the
         * configured certificate itself */
        KW_OP_ATTEST = 60,       /* P     R NONCE -> JSON evidence                      */
        /* console sessions and users (docs/api.md "Sessions", "Users"); a
         * session's role is its user's or its token's */
        KW_OP_SESSION_LOGIN = 70,/* P     R USER PASSWORD; O CLIENT_ADDR, or
                                  * A*    (by token, never by a session) O CLIENT_ADDR
                                  *       -> JSON session document + SESSION (the new id).
                                  *       KW_ERR_LOCKED carries WAIT_SECONDS (Retry-After) */
        KW_OP_SESSION_GET = 71,  /* A* (a session) -> JSON session document              */
        KW_OP_SESSION_LOGOUT = 72, /* A* (a session) O CLIENT_ADDR -> JSON {ended}: every
                                  *       session of the account ends                    */
        KW_OP_USER_CREATE = 73,  /* A a   R USER ROLE PASSWORD -> JSON user              */
        KW_OP_USER_LIST = 74,    /* A a   -> JSON {users:[...]}                          */
        KW_OP_USER_DELETE = 75,  /* A a   R USER -> JSON user; the last admin credential
                                  *       cannot go (KW_ERR_BAD_STATE)                  */
        KW_OP_USER_PASSWORD = 76,/* A a, or A* for the caller's own user session
                                  *       R USER PASSWORD -> JSON user                   */
        /* the console's information ops (issue 14, B: 80-89) */
        KW_OP_KEY_VERSIONS = 80, /* A*    R NAME -> JSON {name, current_version,
                                  *       versions:[{version, created, current}]}    */
        /* fleet mode (issue 16) */
        KW_OP_NODES = 90,        /* P A*  -> JSON {engine, self, state, detail, nodes:[{id,
                                  *       address, version, schema, state, detail,
                                  *       started_ms, seen_ms, age_ms, self}]}; P (the
                                  *       front's /metrics): no address, no detail      */
        KW_OP_MAX = 128
};
/* Roles in the table: A* any role (auditor, operator, admin); A ko operator
 * or admin; A a admin only.  The table itself is op_table in custody.c. */

enum kw_tag {
        KW_T_DETAIL = 1,        /* reply: error detail text (<= 256)               */
        KW_T_JSON = 2,          /* reply: JSON document (<= 512 KiB)                */
        KW_T_NAME = 3,          /* key name [A-Za-z0-9._-]{1,64}                    */
        KW_T_KEY_TYPE = 4,      /* "AES" | "RSA"                                   */
        KW_T_KEY_SIZE = 5,      /* u32 bits: 256 | 2048 | 3072 | 4096               */
        KW_T_OPS = 6,           /* u32 mask of KW_KEYOP_*                           */
        KW_T_TAGS = 7,          /* JSON object of string->string (<= 8 KiB)         */
        KW_T_RULES = 8,         /* JSON rules document (<= 16 KiB), see rules.h     */
        KW_T_MATERIAL = 10,     /* key material to import, as the client sent it (<= 24 KiB) */
        KW_T_STATE = 11,        /* "enabled" | "disabled" | filter value            */
        KW_T_WAIT_SECONDS = 12, /* u32                                              */
        KW_T_LIMIT = 13,        /* u32, 1..1000                                     */
        KW_T_CURSOR = 14,       /* opaque paging cursor string (<= 128)             */
        KW_T_TAG = 15,          /* list filter "k=v" (<= 256)                       */
        KW_T_NAME_PREFIX = 16,  /* list filter (<= 64)                              */
        KW_T_DATA = 17,         /* plaintext / input / output bytes (<= 64 KiB)     */
        KW_T_VERSION = 22,      /* u32 key version                                  */
        KW_T_ALG = 23,          /* u32 enum kw_alg                                  */
        KW_T_SEQ = 24,          /* u64 audit sequence (query: events after it)      */
        KW_T_ACTION = 25,       /* audit action filter (<= 64)                      */
        KW_T_TOKEN_NAME = 27,   /* [A-Za-z0-9._-]{1,64}                             */
        KW_T_ROLE = 28,         /* "admin" | "operator" | "auditor"                 */
        KW_T_TOKEN_ID = 29,     /* token id (<= 64)                                 */
        /* the caller and its proof (see the top of this file) */
        KW_T_CALLER = 30,       /* u32 enum kw_caller, required on every request    */
        KW_T_TOKEN = 31,        /* ADMIN: the bearer token as received (<= 512)     */
        KW_T_EKM_CN = 37,       /* EKM: the verified client certificate's CN (<= 256) */
        KW_T_EKM_PREFIX = 39,   /* EKM: the configured path prefix the request used (<= 64) */
        KW_T_REQUEST_ID = 38,   /* protocol correlation id, for audit/log (<= 256)  */
        /* AWS XKS SigV4 (checked in custody, which holds the secrets) */
        KW_T_XKS_STORE = 36,    /* the XKS key store name (<= 128)                  */
        KW_T_SIGV4_AKID = 40,   /* access key id of the Credential scope (<= 128)   */
        KW_T_SIGV4_STS = 41,    /* the string to sign, built by the front (<= 512)  */
        KW_T_SIGV4_SIG = 42,    /* the request's signature, 32 raw bytes            */
        KW_T_XKS_PREFIX = 43,   /* store URI prefix, "" or "/..." (<= 128)          */
        KW_T_XKS_REGION = 44,   /* store SigV4 region (<= 64)                       */
        KW_T_SIGV4_CREQ = 45,   /* the canonical request the front built (<= 16 KiB) */
        KW_T_BODY = 46,         /* the HTTP request body as received (<= 512 KiB)   */
        KW_T_MATERIAL_FORMAT = 47, /* u32 enum kw_material_format                   */
        KW_T_NONCE = 48,        /* attestation nonce, 32 bytes                      */
        /* console sessions (ADMIN proof) and users */
        KW_T_SESSION = 49,      /* session id as received: 43 base64url chars (<= 64) */
        KW_T_CSRF = 50,         /* the X-CSRF-Token header as received (<= 64)      */
        KW_T_CLIENT_ADDR = 51,  /* the client's IP address, for audit details (<= 64) */
        KW_T_USER = 52,         /* console user name [A-Za-z0-9._-]{1,64}           */
        KW_T_PASSWORD = 53,     /* a password, 12..128 bytes UTF-8 (secret: wiped)  */
        /* the console's audit filters (issue 14, B: 56-62) */
        KW_T_ACTOR = 56,        /* audit actor prefix, printable ASCII (<= 128)     */
        KW_T_SINCE = 57,        /* u64 Unix ms: records at or after it              */
        KW_T_UNTIL = 58,        /* u64 Unix ms: records before it                   */
        KW_T_DESC = 59,         /* u32 1: newest first                              */
        KW_T_BEFORE = 60,       /* u64 audit sequence: records below it             */
        KW_T_MAX = 64
};

/* How KW_T_MATERIAL is encoded (the admin API's import fields). */
enum kw_material_format {
        KW_MATERIAL_AES_B64 = 1,      /* "material": base64 of 32 raw bytes          */
        KW_MATERIAL_PKCS8_B64 = 2,    /* "pkcs8": base64 of PKCS#8 DER (RSA)         */
        KW_MATERIAL_PEM = 3,          /* "pem": an unencrypted PEM private key (RSA) */
};

enum kw_keyop {
        KW_KEYOP_ENCRYPT = 1u << 0,
        KW_KEYOP_DECRYPT = 1u << 1,
        KW_KEYOP_WRAP = 1u << 2,
        KW_KEYOP_UNWRAP = 1u << 3,
        KW_KEYOP_ALL = 0xf
};

enum kw_alg {
        KW_ALG_A256KW = 1,      /* RFC 3394                        */
        KW_ALG_A256KWP = 2,     /* RFC 5649                        */
        KW_ALG_RSA_OAEP_256 = 3,/* OAEP SHA-256 / MGF1-SHA-256     */
        KW_ALG_RSA_OAEP = 4,    /* OAEP SHA-1 / MGF1-SHA-1         */
};

enum kw_caller {
        KW_CALLER_ADMIN = 1,
        KW_CALLER_XKS = 2,
        KW_CALLER_EKM = 3,
        KW_CALLER_PUBLIC = 4,
};

/* Maximum length of a field's value; 0 for an unknown tag. */
uint32_t kw_tag_max(uint8_t tag);

#endif
