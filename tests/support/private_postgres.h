#pragma once
// A Postgres cluster of one test's own, for faults that must not touch the shared fixture
// cluster (a restart would break every other test running against it). It is created with
// tests/support/pg_ctl.sh (initdb + start on a free port; as root, run as `postgres`) and
// removed by the destructor.

#include <string>
#include <vector>

namespace dispatcherd::testing {

class PrivatePostgres {
 public:
  /// initdb's and starts the cluster; ok() tells whether it worked.
  PrivatePostgres();
  ~PrivatePostgres();
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  /// True when the cluster started.
  bool ok() const { return !dsn_.empty(); }
  /// libpq conninfo of this cluster.
  const std::string& dsn() const { return dsn_; }
  /// Fast shutdown (clients are disconnected); files are kept. True on success.
  bool down();
  /// Starts it again on the same port and socket dir. True on success.
  bool up();

  /// Publishes each payload with SELECT pg_notify on a fresh connection, `per_statement` per
  /// statement (payloads must be distinct). False when the server refused or was unreachable.
  bool notify_many(const std::string& channel, const std::vector<std::string>& payloads,
                   std::size_t per_statement = 100) const;

 private:
  bool run(const std::string& cmd) const;
  std::string state_dir_;
  std::string dsn_;
};

}  // namespace dispatcherd::testing
