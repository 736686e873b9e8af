#include "dispatcherd/brokers/pg_connection.h"

#include <utility>

#include "dispatcherd/libpq_api.h"
#include "dispatcherd/log.h"

namespace dispatcherd {
namespace {

// libpq is reached through the dlopen'ed table (libpq_api.h), not linked: a service with only
// the socket broker never loads its ~25 libraries, and one with pg_notify loads it when the
// broker starts (checking the conninfo). Every call below is on a PGconn, which exists only
// once connect() has loaded the table, so this cannot fail where it is used.
const LibPq& pq() {
  auto loaded = libpq();
  DISPATCHERD_ASSERT(loaded.ok());
  return *loaded.value();
}

// libpq messages end with a newline and may span lines ("...\n\tIs the server running...");
// one log line each reads better, so line breaks and their indentation become one space.
std::string trimmed(const char* text) {
  std::string s;
  for (const char* p = text ? text : ""; *p; ++p) {
    if (*p == '\n') {
      while (p[1] == '\t' || p[1] == ' ') ++p;
      s += ' ';
    } else {
      s += *p;
    }
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

struct PgResultDeleter {
  void operator()(PGresult* r) const { pq().PQclear(r); }
};
struct PgNotifyDeleter {
  void operator()(PGnotify* n) const { pq().PQfreemem(n); }
};

PgCommandResult to_command_result(const PGresult* r) {
  PgCommandResult out;
  ExecStatusType st = pq().PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE) {
    out.ok = true;
    if (pq().PQntuples(r) > 0 && pq().PQnfields(r) > 0 && !pq().PQgetisnull(r, 0, 0))
      out.value = pq().PQgetvalue(r, 0, 0);
  } else {
    out.error = trimmed(pq().PQresultErrorMessage(r));
    if (out.error.empty()) out.error = pq().PQresStatus(st);
  }
  return out;
}

}  // namespace

PgConnection::PgConnection(EventLoop& loop, std::string conninfo, Handlers handlers,
                           PgConnectionOptions options)
    : loop_(loop),
      conninfo_(std::move(conninfo)),
      handlers_(std::move(handlers)),
      options_(options) {
  if (options_.notify_budget == 0) options_.notify_budget = 1;
  if (options_.max_in_flight == 0) options_.max_in_flight = 1;
}

PgConnection::~PgConnection() {
  // The owner is going away too: its callbacks must not run, so pending commands are dropped
  // silently rather than failed.
  queue_.clear();
  in_flight_.clear();
  teardown(nullptr);
}

std::vector<std::pair<std::string, std::string>> PgConnection::connect_params(
    const std::string& conninfo) {
  // With expand_dbname, entries before the expanded conninfo are defaults it may override and
  // entries after it win. client_encoding is forced: payloads are UTF-8 JSON and the NOTIFY
  // size limit counts server-encoding bytes, so any other client encoding corrupts messages.
  std::vector<std::pair<std::string, std::string>> p = {
      {"application_name", "dispatcherd"},
      // Dead networks never make the socket readable; keepalives (TCP only) let the kernel
      // notice, the self-check catches the rest.
      {"keepalives", "1"},
      {"keepalives_idle", "30"},
      {"keepalives_interval", "10"},
      {"keepalives_count", "3"},
  };
  if (!conninfo.empty()) p.emplace_back("dbname", conninfo);
  p.emplace_back("client_encoding", "UTF8");
  return p;
}

void PgConnection::connect() {
  // Commands queued while Closed (e.g. publishes during an outage) wait for this attempt.
  if (state_ != State::Closed) close();
  auto params = connect_params(conninfo_);
  std::vector<const char*> keys, values;
  for (auto& [k, v] : params) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // NOTE: for a host *name* this resolves it with a blocking getaddrinfo() (see header).
  std::string early_error;
  if (auto loaded = libpq(); !loaded.ok()) {
    early_error = loaded.error().message;  // conn_ stays null: nothing else calls libpq
  } else {
    conn_ = pq().PQconnectStartParams(keys.data(), values.data(), 1);
    if (!conn_) {
      early_error = "out of memory allocating a libpq connection";
    } else {
      // Set at once so notices during start-up reach our log, not stderr.
      pq().PQsetNoticeProcessor(conn_, &PgConnection::notice_processor, this);
      if (pq().PQstatus(conn_) == CONNECTION_BAD) early_error = trimmed(pq().PQerrorMessage(conn_));
    }
  }
  state_ = State::Connecting;
  if (!early_error.empty()) {
    // connect() promises never to report from inside itself (the owner may not expect the
    // re-entrancy), so the failure is delivered on the next turn.
    loop_.defer([this, weak = std::weak_ptr<int>(alive_), gen = generation_, early_error] {
      if (weak.expired() || gen != generation_) return;
      fail(early_error);
    });
    return;
  }
  connect_timer_ = loop_.after(options_.connect_timeout_seconds, [this] {
    connect_timer_ = 0;
    fail("connect timeout after " + std::to_string(options_.connect_timeout_seconds) + " s");
  });
  // PQconnectStart has begun a connect(); libpq's contract is to wait for writability first.
  watch_socket(kWritable);
}

void PgConnection::watch_socket(std::uint32_t events) {
  // libpq may close the socket and open another between PQconnectPoll steps (next address,
  // SSL retry), and the new one may reuse the fd number: always drop the old registration
  // and add the current socket afresh.
  if (fd_ >= 0) loop_.unwatch(fd_);
  fd_ = conn_ ? pq().PQsocket(conn_) : -1;
  watched_ = events;
  if (fd_ < 0) return;
  loop_.watch(fd_, events, [this](std::uint32_t ev) { on_io(ev); });
}

void PgConnection::on_io(std::uint32_t events) {
  if (state_ == State::Connecting) {
    on_connect_event();
    return;
  }
  if (state_ != State::Ready) return;
  std::uint64_t gen = generation_;
  if ((events & kWritable) && !flush_output()) return;
  if (events & (kReadable | kError | kHangup)) {
    if (!pq().PQconsumeInput(conn_)) {
      fail(trimmed(pq().PQerrorMessage(conn_)));
      return;
    }
  }
  if (pq().PQstatus(conn_) == CONNECTION_BAD) {
    fail(trimmed(pq().PQerrorMessage(conn_)));
    return;
  }
  if (!process_results() || gen != generation_) return;
  drain_notifications();
}

void PgConnection::on_connect_event() {
  switch (pq().PQconnectPoll(conn_)) {
    case PGRES_POLLING_READING:
      watch_socket(kReadable);
      return;
    case PGRES_POLLING_WRITING:
      watch_socket(kWritable);
      return;
    case PGRES_POLLING_FAILED:
      fail(trimmed(pq().PQerrorMessage(conn_)));
      return;
    case PGRES_POLLING_OK:
      break;
    default:  // PGRES_POLLING_ACTIVE is unused by libpq; treat as "try again when writable"
      watch_socket(kWritable);
      return;
  }
  if (connect_timer_) loop_.cancel(connect_timer_);
  connect_timer_ = 0;
  // Non-blocking from now on: PQsendQuery* and PQflush return instead of waiting. Pipeline
  // mode lets several statements (each with its own Sync, so its own transaction) be in
  // flight without a round trip each.
  if (pq().PQsetnonblocking(conn_, 1) != 0 || pq().PQenterPipelineMode(conn_) != 1) {
    fail("cannot set up connection: " + trimmed(pq().PQerrorMessage(conn_)));
    return;
  }
  state_ = State::Ready;
  watch_socket(kReadable);
  std::uint64_t gen = generation_;
  auto weak = std::weak_ptr<int>(alive_);
  if (handlers_.connected) handlers_.connected();
  if (weak.expired() || gen != generation_) return;
  pump_queue();
  if (gen != generation_) return;
  // Notifications may already sit in libpq's buffer (parsed with the connect replies).
  drain_notifications();
}

void PgConnection::send(std::string sql, std::vector<std::string> params, ResultCallback cb) {
  queue_.push_back(Command{std::move(sql), std::move(params), std::move(cb), false});
  pump_queue();
}

void PgConnection::pump_queue() {
  if (state_ != State::Ready) return;
  bool sent = false;
  while (!queue_.empty() && in_flight_.size() < options_.max_in_flight) {
    Command& cmd = queue_.front();
    std::vector<const char*> values;
    values.reserve(cmd.params.size());
    for (auto& p : cmd.params) values.push_back(p.c_str());
    // Text parameters, text results. A Sync after each statement ends its implicit
    // transaction, which is what keeps identical NOTIFY payloads from being collapsed.
    if (pq().PQsendQueryParams(conn_, cmd.sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, 0) != 1 ||
        pq().PQpipelineSync(conn_) != 1) {
      fail("cannot send command: " + trimmed(pq().PQerrorMessage(conn_)));
      return;
    }
    in_flight_.push_back(std::move(cmd));
    queue_.pop_front();
    sent = true;
  }
  if (sent) flush_output();
}

bool PgConnection::flush_output() {
  int r = pq().PQflush(conn_);
  if (r < 0) {
    fail("cannot write to server: " + trimmed(pq().PQerrorMessage(conn_)));
    return false;
  }
  want_write_ = r == 1;
  update_write_interest();
  return true;
}

void PgConnection::update_write_interest() {
  if (fd_ < 0) return;
  std::uint32_t events = kReadable | (want_write_ ? kWritable : 0u);
  if (events == watched_) return;
  loop_.modify(fd_, events);
  watched_ = events;
}

bool PgConnection::process_results() {
  std::uint64_t gen = generation_;
  auto weak = std::weak_ptr<int>(alive_);
  int nulls = 0;
  // PQgetResult blocks when a result is incomplete, even in non-blocking mode, so it is only
  // called while PQisBusy() says a result (or the NULL ending one) is ready.
  while (!in_flight_.empty() && !pq().PQisBusy(conn_)) {
    std::unique_ptr<PGresult, PgResultDeleter> res(pq().PQgetResult(conn_));
    if (!res) {
      // Pipeline mode ends each statement's results with one NULL; two in a row means libpq
      // has nothing more for us right now.
      if (++nulls >= 2) break;
      continue;
    }
    nulls = 0;
    ResultCallback cb;
    PgCommandResult out;
    if (pq().PQresultStatus(res.get()) == PGRES_PIPELINE_SYNC) {
      Command done = std::move(in_flight_.front());
      in_flight_.pop_front();
      if (done.reported || !done.cb) continue;
      out.ok = true;  // a statement that returned nothing but its Sync
      cb = std::move(done.cb);
    } else {
      Command& cmd = in_flight_.front();
      if (cmd.reported) continue;  // extra results of one statement: the first one counts
      cmd.reported = true;
      out = to_command_result(res.get());
      cb = std::move(cmd.cb);
      if (!cb) continue;
    }
    res.reset();
    cb(out);
    if (weak.expired() || gen != generation_) return false;
  }
  if (pq().PQstatus(conn_) == CONNECTION_BAD) {
    fail(trimmed(pq().PQerrorMessage(conn_)));
    return false;
  }
  pump_queue();  // answered statements made room in the pipeline
  return gen == generation_;
}

void PgConnection::drain_notifications() {
  if (state_ != State::Ready) return;
  std::uint64_t gen = generation_;
  auto weak = std::weak_ptr<int>(alive_);
  for (std::size_t n = 0;; ++n) {
    if (n >= options_.notify_budget) {
      // More may be buffered in libpq, and no EPOLLIN will announce them: finish next turn,
      // after other sources (timers, worker IPC) had theirs.
      backlog_pending_ = true;
      ++drain_deferrals_;
      schedule_drain();
      return;
    }
    std::unique_ptr<PGnotify, PgNotifyDeleter> note(pq().PQnotifies(conn_));
    if (!note) {
      backlog_pending_ = false;
      return;
    }
    ++notifications_;
    if (handlers_.notification)
      handlers_.notification(note->relname ? note->relname : "", note->extra ? note->extra : "");
    if (weak.expired() || gen != generation_) return;
  }
}

void PgConnection::schedule_drain() {
  if (drain_scheduled_) return;
  drain_scheduled_ = true;
  loop_.defer([this, weak = std::weak_ptr<int>(alive_), gen = generation_] {
    if (weak.expired()) return;
    drain_scheduled_ = false;
    if (gen != generation_) return;
    drain_notifications();
  });
}

void PgConnection::teardown(const char* goodbye_sql) {
  if (connect_timer_) loop_.cancel(connect_timer_);
  connect_timer_ = 0;
  // The fd leaves epoll before PQfinish closes it: a closed fd cannot be removed any more,
  // and its number may be reused by the next socket at once.
  if (fd_ >= 0) loop_.unwatch(fd_);
  fd_ = -1;
  watched_ = 0;
  if (conn_) {
    if (goodbye_sql && state_ == State::Ready) {
      // Best effort, never waited for: closing the session unlistens anyway.
      if (pq().PQsendQueryParams(conn_, goodbye_sql, 0, nullptr, nullptr, nullptr, nullptr, 0) ==
              1 &&
          pq().PQpipelineSync(conn_) == 1) {
        pq().PQflush(conn_);
      }
    }
    pq().PQfinish(conn_);
    conn_ = nullptr;
  }
  state_ = State::Closed;
  want_write_ = false;
  backlog_pending_ = false;
  ++generation_;
}

void PgConnection::close(const char* goodbye_sql) {
  teardown(goodbye_sql);
  // Callbacks run after the connection is gone, so whatever they do (even send or connect
  // again) meets a consistent object.
  std::deque<Command> dropped;
  dropped.swap(in_flight_);
  for (auto& c : queue_) dropped.push_back(std::move(c));
  queue_.clear();
  auto weak = std::weak_ptr<int>(alive_);
  for (auto& c : dropped) {
    if (!c.cb || c.reported) continue;
    PgCommandResult out;
    out.not_sent = true;
    out.error = "connection closed";
    c.cb(out);
    if (weak.expired()) return;
  }
}

void PgConnection::fail(const std::string& reason) {
  bool was_ready = state_ == State::Ready;
  auto weak = std::weak_ptr<int>(alive_);
  std::uint64_t gen_before = generation_;
  close();
  if (weak.expired()) return;
  // A pending command's callback may already have started a new attempt; then this loss is
  // old news for the owner.
  if (generation_ != gen_before + 1) return;
  if (handlers_.lost) handlers_.lost(reason.empty() ? "connection lost" : reason, was_ready);
}

std::optional<int> PgConnection::backend_pid() const {
  if (state_ != State::Ready || !conn_) return std::nullopt;
  return pq().PQbackendPID(conn_);
}

void PgConnection::notice_processor(void* /*arg*/, const char* message) {
  // Without this libpq prints server notices (including the FATAL sent before the server
  // closes the session) to stderr.
  std::string text = trimmed(message);
  bool informational = text.rfind("NOTICE", 0) == 0 || text.rfind("INFO", 0) == 0 ||
                       text.rfind("DEBUG", 0) == 0 || text.rfind("LOG", 0) == 0;
  if (informational) {
    LOG_INFO("postgres: " << text);
  } else {
    LOG_WARNING("postgres: " << text);
  }
}

}  // namespace dispatcherd
