# bulwark is header-only: one (release) configuration, no binaries.
set(VCPKG_BUILD_TYPE release)

# Overlay port: the source is the checkout this port lives in
# (vcpkg install bulwark --overlay-ports=<checkout>/packaging/vcpkg/ports). A curated-registry
# submission replaces this with vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO ... REF
# "v${VERSION}" SHA512 ...) for the published release tarball; everything below stays the same.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
    FEATURES
        redis       BULWARK_WITH_REDIS
        mysql       BULWARK_WITH_MYSQL
        kafka       BULWARK_WITH_KAFKA
        hazelcast   BULWARK_WITH_HAZELCAST
        http        BULWARK_WITH_HTTP
)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        ${FEATURE_OPTIONS}
        -DBULWARK_BUILD_TESTS=OFF
        -DBULWARK_BUILD_EXAMPLES=OFF
        -DBULWARK_BUILD_BENCHMARKS=OFF
        -DBULWARK_BUILD_LOADGEN=OFF
        -DBULWARK_WARNINGS_AS_ERRORS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH lib/cmake/bulwark)
vcpkg_fixup_pkgconfig()

# Header-only: nothing may remain under lib/ once the CMake package moved to share/bulwark.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/lib")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
