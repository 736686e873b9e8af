// bench_pg_roundtrip: the floor of `dispatcherctl ... ` over pg_notify. A fresh process that
// loads libpq, connects, LISTENs on a channel of its own, sends itself one pg_notify and waits
// for it, then exits: what any control client that connects per command pays before the
// service does anything. `make bench` times it next to `dispatcherctl running`.
//
//   bench_pg_roundtrip DSN
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace {

bool ok(PGconn* c, PGresult* r, const char* what) {
  const bool good = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!good) std::fprintf(stderr, "%s: %s", what, PQerrorMessage(c));
  PQclear(r);
  return good;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: bench_pg_roundtrip DSN\n");
    return 2;
  }
  PGconn* c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "connect: %s", PQerrorMessage(c));
    return 1;
  }
  const std::string ch = "bench_rt_" + std::to_string(::getpid());
  if (!ok(c, PQexec(c, ("LISTEN " + ch).c_str()), "LISTEN")) return 1;
  const char* params[] = {ch.c_str(), "x"};
  if (!ok(c, PQexecParams(c, "SELECT pg_notify($1, $2)", 2, nullptr, params, nullptr, nullptr, 0),
          "pg_notify"))
    return 1;
  for (;;) {
    PQconsumeInput(c);
    if (PGnotify* n = PQnotifies(c)) {
      PQfreemem(n);
      break;
    }
    pollfd p{PQsocket(c), POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) {
      std::fprintf(stderr, "no notification within 5 s\n");
      return 1;
    }
  }
  PQfinish(c);
  return 0;
}
