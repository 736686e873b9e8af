#pragma once
// libpq for every caller in this tree (PgConn, the Publisher, dispatcherctl, the config's
// conninfo check, the service's pg_notify broker), reached through a table of function
// pointers that dlopen/dlsym fill on first use instead of a link-time dependency. Linking
// libpq pulls ~25 shared libraries (krb5, ldap, gnutls, ssl...) whose loading and relocation
// cost every start ~390 page faults, ~17 ms on a 2-core VM: dispatcherctl commands that never
// talk to Postgres and a service with only the socket broker do not pay it, and a service
// with pg_notify pays it once its config names a Postgres. Where libpq is linked anyway
// (library mode, tests) dlopen returns the copy already loaded. <libpq-fe.h> is here for the
// types, constants and function signatures only: nothing below references a symbol.

#include <libpq-fe.h>

#include "dispatcherd/result.h"

namespace dispatcherd {

// Every libpq function this tree calls. Adding one here is all a new call needs.
#define DISPATCHERD_LIBPQ_FUNCTIONS(X) \
  X(PQconnectdbParams)                 \
  X(PQconnectStartParams)              \
  X(PQconnectPoll)                     \
  X(PQbackendPID)                      \
  X(PQntuples)                         \
  X(PQnfields)                         \
  X(PQgetisnull)                       \
  X(PQgetvalue)                        \
  X(PQstatus)                          \
  X(PQerrorMessage)                    \
  X(PQsetNoticeProcessor)              \
  X(PQfinish)                          \
  X(PQsocket)                          \
  X(PQexecParams)                      \
  X(PQresultStatus)                    \
  X(PQresStatus)                       \
  X(PQresultErrorMessage)              \
  X(PQclear)                           \
  X(PQfreemem)                         \
  X(PQnotifies)                        \
  X(PQconsumeInput)                    \
  X(PQisBusy)                          \
  X(PQgetResult)                       \
  X(PQsetnonblocking)                  \
  X(PQflush)                           \
  X(PQenterPipelineMode)               \
  X(PQexitPipelineMode)                \
  X(PQpipelineStatus)                  \
  X(PQpipelineSync)                    \
  X(PQsendFlushRequest)                \
  X(PQsendQueryParams)                 \
  X(PQconninfoParse)                   \
  X(PQconninfoFree)

/// The libpq functions this tree uses; each member is named and typed like the
/// function it points to (`pq.PQstatus(conn)`). All non-null once loaded.
struct LibPq {
#define DISPATCHERD_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
  DISPATCHERD_LIBPQ_FUNCTIONS(DISPATCHERD_LIBPQ_MEMBER)
#undef DISPATCHERD_LIBPQ_MEMBER
};

/// The library libpq() loads: the ABI <libpq-fe.h> describes.
inline constexpr char kLibPqSoname[] = "libpq.so.5";

/// dlopen(`soname`, RTLD_NOW | RTLD_LOCAL), then resolves every member of the table. On
/// success the library stays loaded for the rest of the process (the pointers must stay
/// valid, and libpq is not made to be unloaded). Error: "cannot load <soname>: <dlerror>",
/// for a missing library as for a missing function.
Result<LibPq> load_libpq(const char* soname);

/// The process-wide table for kLibPqSoname, loaded on the first call (thread-safe). A failed
/// load is not retried: every call returns its error. The table outlives static
/// destructors, so a static Publisher may still close its connection at exit.
Result<const LibPq*> libpq();

/// libpq(), first telling GnuTLS not to initialise itself when it is loaded (libpq pulls it
/// in through libldap, for LDAP service lookups only; libldap initialises it itself if it ever
/// needs TLS). That load-time initialisation costs ~120 kB of heap and ~1 ms for nothing in
/// the service. Sets GNUTLS_NO_IMPLICIT_INIT around the load and restores the environment:
/// call it only while the process has one thread (the service's main process).
Result<const LibPq*> libpq_single_threaded();

}  // namespace dispatcherd
