/*
 * proto.h - the fixed request table between the front and the custody
 * process (version 1).
 *
 * Transport: a SOCK_STREAM Unix socket.  Frame = u32be length | payload,
 * length <= KW_IPC_MAX_FRAME.
 *   request payload: u8 version | u8 op | u16be 0 | u32be request id | fields
 *   reply payload:   u8 version | u8 op | u16be 0 | u32be request id |
 *                    u32be (int32) code | fields
 *   field: u8 tag | u32be length | bytes      (each tag at most once)
 * Integers inside fields are big-endian u32 (or u64 where noted).  Strings
 * are UTF-8 without NUL.  Every field has a maximum length (kw_tag_max).
 *
 * The table below is the whole contract: for each op, the fields it takes
 * (R required, O optional) and the fields of a successful reply.  A failed
 * reply carries code < 0 and optionally KW_T_DETAIL (non-secret text).
 */
#ifndef KW_PROTO_H
#define KW_PROTO_H

#include <stdint.h>

#define KW_PROTO_VERSION 1
#define KW_IPC_MAX_FRAME (1024u * 1024u)

enum kw_op {
        KW_OP_PING = 1,          /* -> -                                            */
        KW_OP_STATUS = 2,        /* -> JSON {state, keys, hsm, cache, ...}          */
        KW_OP_STATS = 3,         /* -> JSON counters (hsm calls, cache hits, ...)    */
        KW_OP_HEALTH = 4,        /* deep check: HSM seal/unseal + DB read -> JSON    */
        KW_OP_KEY_CREATE = 10,   /* R NAME KEY_TYPE KEY_SIZE; O OPS TAGS RULES; R ACTOR -> JSON key */
        KW_OP_KEY_IMPORT = 11,   /* as CREATE + R MATERIAL (AES raw / RSA PKCS#8 DER)  -> JSON key */
        KW_OP_KEY_GET = 12,      /* R NAME -> JSON key                                */
        KW_OP_KEY_LIST = 13,     /* O LIMIT CURSOR STATE KEY_TYPE TAG NAME_PREFIX -> JSON {keys,next} */
        KW_OP_KEY_SET_STATE = 14,/* R NAME STATE("enabled"|"disabled") ACTOR -> JSON key */
        KW_OP_KEY_ROTATE = 15,   /* R NAME ACTOR -> JSON key                          */
        KW_OP_KEY_SCHEDULE_DELETE = 16, /* R NAME ACTOR; O WAIT_SECONDS -> JSON key   */
        KW_OP_KEY_CANCEL_DELETE = 17,   /* R NAME ACTOR -> JSON key                    */
        KW_OP_KEY_UPDATE = 18,   /* R NAME ACTOR; O TAGS RULES OPS -> JSON key        */
        KW_OP_ENCRYPT = 20,      /* AES-GCM. R NAME DATA; O AAD XKS_FLAGS; caller -> CT IV TAG VERSION */
        KW_OP_DECRYPT = 21,      /* R NAME CT IV TAG VERSION; O AAD; caller -> DATA   */
        KW_OP_WRAP = 22,         /* R NAME ALG DATA; caller -> DATA VERSION            */
        KW_OP_UNWRAP = 23,       /* R NAME ALG DATA; O VERSION; caller -> DATA VERSION */
        KW_OP_AUDIT_QUERY = 30,  /* O LIMIT SEQ NAME ACTION -> JSON {events,next}     */
        KW_OP_AUDIT_VERIFY = 31, /* -> JSON {ok, rows, first_bad_seq?}                */
        KW_OP_TOKEN_CHECK = 40,  /* R TOKEN_HASH -> JSON {id,name,role}               */
        KW_OP_TOKEN_CREATE = 41, /* R TOKEN_NAME ROLE ACTOR -> JSON {id,name,role,token} */
        KW_OP_TOKEN_LIST = 42,   /* -> JSON {tokens:[...]}                            */
        KW_OP_TOKEN_REVOKE = 43, /* R TOKEN_ID ACTOR -> JSON token                    */
        /* AWS XKS (docs/xks.md).  Any request may also carry the SigV4 fields
         * (SIGV4_AKID SIGV4_STS SIGV4_SIG + XKS_STORE): custody then verifies
         * the signature FIRST and answers KW_ERR_AUTH before anything else. */
        KW_OP_XKS_AUTH = 50,     /* R XKS_STORE SIGV4_AKID SIGV4_STS SIGV4_SIG -> -  */
        KW_OP_XKS_STORES = 51,   /* -> JSON {gen, stores:[{name,uri_prefix,region,service,source,access_key_ids}]} (no secrets) */
        KW_OP_XKS_STORE_CREATE = 52, /* R XKS_STORE XKS_PREFIX ACTOR; O XKS_REGION -> JSON import file + store */
        KW_OP_XKS_CRED_ROTATE = 53,  /* R XKS_STORE ACTOR -> JSON import file (new pair; at most 2 kept) */
        KW_OP_XKS_CRED_DELETE = 54,  /* R XKS_STORE SIGV4_AKID ACTOR -> JSON store        */
        KW_OP_XKS_STORE_DELETE = 55, /* R XKS_STORE ACTOR -> JSON {deleted}               */
        KW_OP_XKS_IMPORT_FILE = 56,  /* R XKS_STORE ACTOR -> JSON import file (newest pair) */
        KW_OP_MAX = 64
};

enum kw_tag {
        KW_T_DETAIL = 1,        /* reply: error detail text (<= 256)               */
        KW_T_JSON = 2,          /* reply: JSON document (<= 512 KiB)                */
        KW_T_NAME = 3,          /* key name [A-Za-z0-9._-]{1,64}                    */
        KW_T_KEY_TYPE = 4,      /* "AES" | "RSA"                                   */
        KW_T_KEY_SIZE = 5,      /* u32 bits: 256 | 2048 | 3072 | 4096               */
        KW_T_OPS = 6,           /* u32 mask of KW_KEYOP_*                           */
        KW_T_TAGS = 7,          /* JSON object of string->string (<= 8 KiB)         */
        KW_T_RULES = 8,         /* JSON rules document (<= 16 KiB), see rules.h     */
        KW_T_ACTOR = 9,         /* who asks, for the audit: "token:<id>", "xks:<akid>", "ekm:<cn>" (<= 256) */
        KW_T_MATERIAL = 10,     /* secret key material to import (<= 8 KiB)         */
        KW_T_STATE = 11,        /* "enabled" | "disabled" | filter value            */
        KW_T_WAIT_SECONDS = 12, /* u32                                              */
        KW_T_LIMIT = 13,        /* u32, 1..1000                                     */
        KW_T_CURSOR = 14,       /* opaque paging cursor string (<= 128)             */
        KW_T_TAG = 15,          /* list filter "k=v" (<= 256)                       */
        KW_T_NAME_PREFIX = 16,  /* list filter (<= 64)                              */
        KW_T_DATA = 17,         /* plaintext / input / output bytes (<= 64 KiB)     */
        KW_T_AAD = 18,          /* AES-GCM associated data (<= 16 KiB)              */
        KW_T_IV = 19,           /* 12 bytes                                         */
        KW_T_AUTH_TAG = 20,     /* 16 bytes                                         */
        KW_T_CT = 21,           /* ciphertext (<= 64 KiB)                           */
        KW_T_VERSION = 22,      /* u32 key version                                  */
        KW_T_ALG = 23,          /* u32 enum kw_alg                                  */
        KW_T_SEQ = 24,          /* u64 audit sequence (query: events after it)      */
        KW_T_ACTION = 25,       /* audit action filter (<= 64)                      */
        KW_T_TOKEN_HASH = 26,   /* SHA-256 of a bearer token, 32 bytes              */
        KW_T_TOKEN_NAME = 27,   /* [A-Za-z0-9._-]{1,64}                             */
        KW_T_ROLE = 28,         /* "admin" | "operator" | "auditor"                 */
        KW_T_TOKEN_ID = 29,     /* token id (<= 64)                                 */
        /* caller context: evaluated against the key's rules in custody */
        KW_T_CALLER = 30,       /* u32 enum kw_caller                               */
        KW_T_XKS_PRINCIPAL = 31,/* awsPrincipalArn (<= 2048)                        */
        KW_T_XKS_OPERATION = 32,/* kmsOperation (<= 128)                            */
        KW_T_XKS_VIA = 33,      /* kmsViaService (<= 128)                           */
        KW_T_XKS_VPC = 34,      /* awsSourceVpc (<= 128)                            */
        KW_T_XKS_VPCE = 35,     /* awsSourceVpce (<= 128)                           */
        KW_T_XKS_STORE = 36,    /* the XKS URI prefix / key store name (<= 128)     */
        KW_T_EKM_CN = 37,       /* the client certificate's CN (<= 256)             */
        KW_T_REQUEST_ID = 38,   /* protocol correlation id, for audit/log (<= 256)  */
        /* AWS XKS SigV4 (checked in custody, which holds the secrets) */
        KW_T_SIGV4_AKID = 40,   /* access key id of the Credential scope (<= 128)   */
        KW_T_SIGV4_STS = 41,    /* the string to sign, built by the front (<= 512)  */
        KW_T_SIGV4_SIG = 42,    /* the request's signature, 32 raw bytes            */
        KW_T_XKS_PREFIX = 43,   /* store URI prefix, "" or "/..." (<= 128)          */
        KW_T_XKS_REGION = 44,   /* store SigV4 region (<= 64)                       */
        KW_T_XKS_FLAGS = 45,    /* u32 KW_XKS_F_* for ENCRYPT (see xks_aad.h)        */
        KW_T_MAX = 48
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
};

/* Maximum length of a field's value; 0 for an unknown tag. */
uint32_t kw_tag_max(uint8_t tag);

#endif
