#pragma once
// bulwark::mysql: the MySQL/MariaDB backend (MariaDB Connector/C, non-blocking API on Asio).
//   connection   one non-blocking connection with timeouts enforced by a watchdog
//   pool         bounded pool with reconnect backoff, bounded waiters, health check, stop
//   repository   bulwark::repository on one table per collection (+ migrate())
//   ledger       bulwark::ledger on a balances table and an operations table

#include <bulwark/mysql/config.hpp>
#include <bulwark/mysql/connection.hpp>
#include <bulwark/mysql/error.hpp>
#include <bulwark/mysql/ledger.hpp>
#include <bulwark/mysql/pool.hpp>
#include <bulwark/mysql/repository.hpp>
