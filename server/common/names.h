/*
 * names.h - the one alphabet for names that appear in URLs, the database
 * and the audit log: key names, token names, store names.
 */
#ifndef KW_NAMES_H
#define KW_NAMES_H

#define KW_NAME_MAX 64

/* 1 when s is 1..64 characters of [A-Za-z0-9._-] and not "." or ".."
 * (which would be path segments of their own in a URL). */
int kw_name_valid(const char *s);
/* 1 for a character of that alphabet. */
int kw_name_char(unsigned char c);
/* 1 when s is valid UTF-8 without control characters (may be empty). */
int kw_utf8_printable(const char *s);

#endif
