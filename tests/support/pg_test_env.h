#pragma once
// Access to the throwaway Postgres that the CTest fixture `postgres` starts
// (tests/support/pg_ctl.sh). Tests that need it call pg_dsn() and skip when it is absent.

#include <string>

namespace dispatcherd::testing {

/// A path from the build's test-paths.env (named by DISPATCHERD_TEST_PATHS), e.g.
/// "DISPATCHERD_BIN"; falls back to the environment variable of that name; "" when unknown.
std::string test_path(const std::string& key);

/// The libpq connection string of the test cluster, or "" when no cluster is running
/// (the cluster's env file, test_path("DISPATCHERD_TEST_PG_ENV"), is missing).
std::string pg_dsn();

/// Runs one SQL statement on a fresh blocking connection; returns the first field of the
/// first row (or "" when there is none). Fails the current test on error.
std::string pg_exec(const std::string& sql);

/// A channel name unique to this test process, e.g. "t_<pid>_<n>_<suffix>".
std::string unique_channel(const std::string& suffix);

}  // namespace dispatcherd::testing

#define REQUIRE_PG()                                                            \
  do {                                                                          \
    if (::dispatcherd::testing::pg_dsn().empty()) GTEST_SKIP() << "no test Postgres"; \
  } while (0)
