#pragma once
// bulwark::backoff lives in the core vocabulary header <bulwark/retry_policy.hpp> (concept
// headers use it through retry_policy); this header stays for the adapters that name it here.

#include <bulwark/retry_policy.hpp>
