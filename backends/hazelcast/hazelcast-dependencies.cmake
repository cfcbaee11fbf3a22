# bulwark::hazelcast needs nothing beyond bulwark::core and bulwark::http (both in the main
# package): the member REST API is plain HTTP/1.1. Installed beside the package config for
# find_package(bulwark COMPONENTS hazelcast).
