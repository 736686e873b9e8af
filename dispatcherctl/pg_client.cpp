#include "pg_client.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/log.h"

namespace dispatcherctl {

using dispatcherd::Error;
using dispatcherd::Ok;
using dispatcherd::Result;
using dispatcherd::Status;

namespace {

// libpq messages end with "\n" and may hold several lines (one per host tried, hints).
std::string one_line(const char* message) {
  std::string out;
  std::string_view m = message ? message : "";
  while (!m.empty()) {
    auto nl = m.find('\n');
    std::string_view line = m.substr(0, nl);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (!line.empty()) out += (out.empty() ? "" : "; ") + std::string(line);
    if (nl == std::string_view::npos) break;
    m.remove_prefix(nl + 1);
  }
  return out.empty() ? "unknown error" : out;
}

// Server notices (e.g. "identifier will be truncated") go to our log, not raw to stderr.
void on_notice(void*, const char* message) {
  LOG_INFO("postgres: " << one_line(message));
}

}  // namespace

void PgClient::Finish::operator()(pg_conn* c) const {
  PQfinish(c);
}

PgClient::~PgClient() = default;

Result<PgClient> PgClient::connect(const std::string& conninfo) {
  // Entries before the expanded dbname can be overridden by the conninfo, entries after it
  // override the conninfo (libpq's documented order): a default timeout, a forced encoding.
  const char* keys[] = {"connect_timeout", "dbname", "client_encoding", nullptr};
  const char* values[] = {"10", conninfo.c_str(), "UTF8", nullptr};
  pg_conn* raw = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (raw == nullptr) return Error{"cannot connect to Postgres: out of memory"};
  PgClient client(raw);
  if (PQstatus(raw) != CONNECTION_OK)
    return Error{"cannot connect to Postgres: " + one_line(PQerrorMessage(raw))};
  PQsetNoticeProcessor(raw, on_notice, nullptr);
  return client;
}

std::string PgClient::last_error() const {
  return one_line(PQerrorMessage(conn_.get()));
}

Status PgClient::exec_params(const char* sql, std::vector<const char*> params) {
  PGresult* r = PQexecParams(conn_.get(), sql, static_cast<int>(params.size()), nullptr,
                             params.data(), nullptr, nullptr, 0);
  const ExecStatusType st = PQresultStatus(r);
  std::string error = r ? one_line(PQresultErrorMessage(r)) : last_error();
  PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Error{std::move(error)};
  return Ok{};
}

Status PgClient::listen(std::string_view channel) {
  const std::string sql = "LISTEN " + dispatcherd::quote_identifier(channel);
  if (auto s = exec_params(sql.c_str(), {}); !s.ok())
    return Error{"LISTEN failed: " + s.error().message};
  return Ok{};
}

Status PgClient::unlisten_all() {
  return exec_params("UNLISTEN *", {});
}

Status PgClient::notify(std::string_view channel, std::string_view payload) {
  const std::string ch(channel), pl(payload);
  if (auto s = exec_params("SELECT pg_notify($1, $2)", {ch.c_str(), pl.c_str()}); !s.ok())
    return Error{"pg_notify to " + ch + " failed: " + s.error().message};
  return Ok{};
}

bool PgClient::drain(const NotifyHandler& handler) {
  while (PGnotify* n = PQnotifies(conn_.get())) {
    const bool stop = handler(n->relname, n->extra ? n->extra : "");
    PQfreemem(n);
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
    pollfd pfd{PQsocket(conn_.get()), POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(ms));
    if (n < 0 && errno != EINTR) return Error{std::string("poll: ") + std::strerror(errno)};
    if (n <= 0) continue;
    if (PQconsumeInput(conn_.get()) == 0) return Error{"connection lost: " + last_error()};
    if (drain(handler)) return Ok{};
  }
}

}  // namespace dispatcherctl
