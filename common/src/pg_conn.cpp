#include "dispatcherd/pg_conn.h"

#include <string>
#include <string_view>

#include "dispatcherd/libpq_api.h"
#include "dispatcherd/log.h"

namespace dispatcherd {
namespace {

// Server notices (e.g. a WARNING from a trigger) go to our log, not raw to stderr.
void on_notice(void*, const char* message) {
  LOG_INFO("postgres: " << pg_one_line(message));
}

}  // namespace

std::string pg_one_line(const char* message) {
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

void PgConn::Finish::operator()(pg_conn* c) const {
  pq->PQfinish(c);
}

Result<PgConn> PgConn::open(const std::string& conninfo, int connect_timeout_seconds) {
  // Keywords before the expanded dbname are defaults the conninfo may override; keywords
  // after it override the conninfo (libpq's documented order). UTF8 is forced because the
  // payloads are UTF-8 JSON and NOTIFY's 7999-byte limit counts server-encoding bytes.
  const std::string timeout = std::to_string(connect_timeout_seconds);
  const char* keys[] = {"connect_timeout", "dbname", "client_encoding", nullptr};
  const char* values[] = {timeout.c_str(), conninfo.c_str(), "UTF8", nullptr};
  auto loaded = libpq();
  if (!loaded.ok()) return loaded.error();
  const LibPq& pq = **loaded;
  PgConn out;
  out.conn_ = std::unique_ptr<pg_conn, Finish>(
      pq.PQconnectdbParams(keys, values, /*expand_dbname=*/1), Finish{&pq});
  if (!out.conn_) return Error{"cannot connect to Postgres: out of memory"};
  if (pq.PQstatus(out.get()) != CONNECTION_OK)
    return Error{"cannot connect to Postgres: " + out.last_error()};
  pq.PQsetNoticeProcessor(out.get(), on_notice, nullptr);
  return out;
}

bool PgConn::healthy() const {
  return conn_ && pq().PQstatus(conn_.get()) == CONNECTION_OK;
}

std::string PgConn::last_error() const {
  return pg_one_line(conn_ ? pq().PQerrorMessage(conn_.get()) : "no connection");
}

}  // namespace dispatcherd
