#include "pg_client.h"

#include <poll.h>

#include <cerrno>
#include <cstring>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/libpq_api.h"
#include "dispatcherd/log.h"

namespace dispatcherctl {

using dispatcherd::Error;
using dispatcherd::Ok;
using dispatcherd::Result;
using dispatcherd::Status;

PgClient::~PgClient() = default;

Result<PgClient> PgClient::connect(const std::string& conninfo) {
  auto conn = dispatcherd::PgConn::open(conninfo, /*connect_timeout_seconds=*/10);
  if (!conn.ok()) return conn.error();
  return PgClient(std::move(conn).value());
}

std::string PgClient::last_error() const {
  return conn_.last_error();
}

Status PgClient::exec_params(const char* sql, std::vector<const char*> params) {
  const dispatcherd::LibPq& pq = conn_.pq();
  PGresult* r = pq.PQexecParams(conn_.get(), sql, static_cast<int>(params.size()), nullptr,
                                params.data(), nullptr, nullptr, 0);
  const ExecStatusType st = pq.PQresultStatus(r);
  std::string error = r ? dispatcherd::pg_one_line(pq.PQresultErrorMessage(r)) : last_error();
  pq.PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error{std::move(error)};
  return Ok{};
}

Status PgClient::listen(std::string_view channel) {
  const std::string sql = "LISTEN " + dispatcherd::quote_identifier(channel);
  if (auto s = exec_params(sql.c_str(), {}); !s.ok())
    return Error{"LISTEN failed: " + s.error().message};
  return Ok{};
}

Status PgClient::notify(std::string_view channel, std::string_view payload) {
  const std::string ch(channel), pl(payload);
  if (auto s = exec_params("SELECT pg_notify($1, $2)", {ch.c_str(), pl.c_str()}); !s.ok())
    return Error{"pg_notify to " + ch + " failed: " + s.error().message};
  return Ok{};
}

bool PgClient::drain(const NotifyHandler& handler) {
  const dispatcherd::LibPq& pq = conn_.pq();
  while (PGnotify* n = pq.PQnotifies(conn_.get())) {
    const bool stop = handler(n->relname, n->extra ? n->extra : "");
    pq.PQfreemem(n);
    if (stop) return true;
  }
  return false;
}

Status PgClient::wait(std::chrono::steady_clock::time_point deadline,
                      const NotifyHandler& handler) {
  using std::chrono::steady_clock;
  // Notifications that arrived while our own statements ran are already queued in libpq.
  if (drain(handler)) return Ok{};
  for (;;) {
    const auto left = deadline - steady_clock::now();
    if (left <= steady_clock::duration::zero()) return Ok{};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    pollfd pfd{conn_.pq().PQsocket(conn_.get()), POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(ms));
    if (n < 0 && errno != EINTR) return Error{std::string("poll: ") + std::strerror(errno)};
    if (n <= 0) continue;
    if (conn_.pq().PQconsumeInput(conn_.get()) == 0)
      return Error{"connection lost: " + last_error()};
    if (drain(handler)) return Ok{};
  }
}

}  // namespace dispatcherctl
