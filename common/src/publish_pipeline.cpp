#include "publish_pipeline.h"

#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "dispatcherd/libpq_api.h"
#include "dispatcherd/log.h"

namespace dispatcherd::publish_detail {

namespace {

// Releases a PGresult on every path.
struct ResultGuard {
  ResultGuard(const LibPq& libpq, PGresult* result) : pq(libpq), r(result) {}
  const LibPq& pq;
  PGresult* r;
  ResultGuard(const ResultGuard&) = delete;
  ResultGuard& operator=(const ResultGuard&) = delete;
  ~ResultGuard() { pq.PQclear(r); }
};

// Puts the connection in (and back out of) pipeline and non-blocking mode. Leaving pipeline
// mode only works with no results pending, i.e. after every Sync was read; on a failed run
// the connection is dropped anyway (the Publisher reconnects).
class PipelineMode {
 public:
  PipelineMode(const LibPq& pq, PGconn* c) : pq_(pq), c_(c) {
    ok_ = pq_.PQsetnonblocking(c_, 1) == 0 && pq_.PQenterPipelineMode(c_) == 1;
  }
  PipelineMode(const PipelineMode&) = delete;
  PipelineMode& operator=(const PipelineMode&) = delete;
  ~PipelineMode() {
    if (pq_.PQpipelineStatus(c_) != PQ_PIPELINE_OFF) pq_.PQexitPipelineMode(c_);
    pq_.PQsetnonblocking(c_, 0);
  }
  bool ok() const { return ok_; }

 private:
  const LibPq& pq_;
  PGconn* c_;
  bool ok_ = false;
};

}  // namespace

PipelineOutcome run_pipeline(PgConn& conn, const std::vector<Segment>& segments,
                             double io_timeout_seconds, std::size_t max_in_flight) {
  PipelineOutcome out;
  std::vector<std::string>& errors = out.errors;
  errors.resize(segments.size());
  PGconn* c = conn.get();
  std::size_t rx_seg = 0;  // first segment whose Sync has not been read
  auto fail_rest = [&](const std::string& why) {
    for (std::size_t i = rx_seg; i < segments.size(); ++i)
      if (errors[i].empty()) errors[i] = why;
    out.broken = true;
    return out;
  };
  if (!conn.healthy()) return fail_rest("connection lost: " + conn.last_error());
  const LibPq& pq = conn.pq();  // valid from here: the connection is held
  PipelineMode mode(pq, c);
  if (!mode.ok()) return fail_rest("cannot enter pipeline mode: " + conn.last_error());

  // Send side: the next statement is segments[tx_seg][tx_idx], or its Sync when tx_idx is
  // the segment's size. Receive side: the same for the next result expected.
  std::size_t tx_seg = 0, tx_idx = 0, rx_idx = 0, in_flight = 0;
  bool expect_null = false;      // a statement's result is followed by one NULL
  bool flush_requested = false;  // asked the server to flush since we last sent
  const auto timeout = std::chrono::duration<double>(io_timeout_seconds);
  auto last_progress = std::chrono::steady_clock::now();
  static const char kSql[] = "SELECT pg_notify($1, $2)";

  while (rx_seg < segments.size()) {
    // Queue statements into libpq's buffer while few are unanswered.
    while (tx_seg < segments.size() && in_flight < max_in_flight) {
      const Segment& seg = segments[tx_seg];
      int sent;
      if (tx_idx < seg.size()) {
        // libpq wants NUL-terminated values; the views point into std::strings (publish.cpp)
        // whose data() is terminated right after the view.
        const char* values[2] = {seg[tx_idx].channel.data(), seg[tx_idx].payload.data()};
        sent = pq.PQsendQueryParams(c, kSql, 2, nullptr, values, nullptr, nullptr, 0);
        ++tx_idx;
      } else {
        sent = pq.PQpipelineSync(c);
        ++tx_seg;
        tx_idx = 0;
      }
      if (sent != 1) return fail_rest("sending to Postgres failed: " + conn.last_error());
      ++in_flight;
      flush_requested = false;
    }
    // At the cap the server may sit on a partly filled output buffer until it sees a Sync,
    // and we would wait for those results forever: ask it to flush what it has.
    if (tx_seg < segments.size() && !flush_requested) {
      if (pq.PQsendFlushRequest(c) != 1)
        return fail_rest("sending to Postgres failed: " + conn.last_error());
      flush_requested = true;
    }
    const int pending = pq.PQflush(c);  // 0: all sent, 1: more to send, -1: error
    if (pending < 0) return fail_rest("connection lost while sending: " + conn.last_error());

    // Hand over every result libpq already holds.
    bool progressed = false;
    while (!pq.PQisBusy(c)) {
      PGresult* r = pq.PQgetResult(c);
      if (r == nullptr) {
        if (!expect_null) break;  // nothing more is complete yet
        expect_null = false;
        continue;
      }
      ResultGuard guard{pq, r};
      progressed = true;
      const ExecStatusType st = pq.PQresultStatus(r);
      const Segment& seg = segments[rx_seg];
      if (rx_idx < seg.size()) {
        // A failed statement aborts the rest of its segment (PGRES_PIPELINE_ABORTED, which
        // keeps the first error as the segment's).
        if (st != PGRES_TUPLES_OK && errors[rx_seg].empty())
          errors[rx_seg] = st == PGRES_PIPELINE_ABORTED ? "aborted by an earlier error"
                                                        : pg_one_line(pq.PQresultErrorMessage(r));
        ++rx_idx;
        expect_null = true;
      } else if (st == PGRES_PIPELINE_SYNC) {
        ++rx_seg;
        rx_idx = 0;
      } else {
        return fail_rest("unexpected pipeline result " + std::string(pq.PQresStatus(st)) + ": " +
                         pg_one_line(pq.PQresultErrorMessage(r)));
      }
      --in_flight;
    }
    if (rx_seg >= segments.size()) break;  // every Sync read: nothing is pending
    if (progressed) {
      last_progress = std::chrono::steady_clock::now();
      continue;  // room to send more, or more results may be buffered
    }

    int wait_ms = -1;
    if (io_timeout_seconds > 0) {
      const auto left = timeout - (std::chrono::steady_clock::now() - last_progress);
      if (left <= std::chrono::steady_clock::duration::zero())
        return fail_rest("no answer from Postgres for " + std::to_string(io_timeout_seconds) +
                         " s");
      wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    pollfd pfd{pq.PQsocket(c), static_cast<short>(POLLIN | (pending == 1 ? POLLOUT : 0)), 0};
    const int n = ::poll(&pfd, 1, wait_ms);
    if (n < 0 && errno != EINTR) return fail_rest(std::string("poll: ") + std::strerror(errno));
    if (n > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP))) {
      if (pq.PQconsumeInput(c) == 0) return fail_rest("connection lost: " + conn.last_error());
      last_progress = std::chrono::steady_clock::now();
    }
  }
  return out;
}

}  // namespace dispatcherd::publish_detail
