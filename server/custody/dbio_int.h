/*
 * dbio_int.h - what dbio.c (build, checksum, write) and dbio_parse.c (the
 * strict parser) of the export document share.  Private to these files;
 * dbio.h is the module's header.
 */
#ifndef KW_DBIO_INT_H
#define KW_DBIO_INT_H

/* The names of a key's operations in the document: bit i of its operations
 * mask (KW_KEYOP_*, proto.h) is kw_dbio_op_names[i] (dbio.c). */
extern const char *const kw_dbio_op_names[4];

#endif
