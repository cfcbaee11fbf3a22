#pragma once
// bulwark::hazelcast: the Hazelcast backend over the member REST API (docs/hazelcast.md).
//   member_list  failover across members with readiness probes (members.hpp)
//   cache        bulwark::cache over /hazelcast/rest/maps (cache.hpp)

#include <bulwark/hazelcast/cache.hpp>
#include <bulwark/hazelcast/envelope.hpp>
#include <bulwark/hazelcast/error.hpp>
#include <bulwark/hazelcast/members.hpp>
#include <bulwark/hazelcast/path.hpp>
