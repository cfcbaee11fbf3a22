# Finds MariaDB Connector/C for bulwark::mysql as bulwark_deps::mysqlclient; used by the build and
# by find_package(bulwark COMPONENTS mysql). The backend uses the connector's non-blocking API
# (mysql_real_query_start & co.), which Oracle's libmysqlclient lacks. A CMake package comes
# first (conan's CMakeDeps: mariadb-connector-c::mariadb-connector-c; vcpkg's libmariadb:
# unofficial::libmariadb), then pkg-config (Debian: libmariadb.pc).
if(NOT TARGET bulwark_deps::mysqlclient)
  if(NOT TARGET mariadb-connector-c::mariadb-connector-c)
    find_package(mariadb-connector-c CONFIG QUIET)
  endif()
  if(NOT TARGET mariadb-connector-c::mariadb-connector-c AND NOT TARGET unofficial::libmariadb)
    find_package(unofficial-libmariadb CONFIG QUIET)
  endif()
  add_library(bulwark_deps::mysqlclient INTERFACE IMPORTED)
  if(TARGET mariadb-connector-c::mariadb-connector-c)
    target_link_libraries(bulwark_deps::mysqlclient INTERFACE mariadb-connector-c::mariadb-connector-c)
  elseif(TARGET unofficial::libmariadb)
    target_link_libraries(bulwark_deps::mysqlclient INTERFACE unofficial::libmariadb)
  else()
    find_package(PkgConfig REQUIRED)
    pkg_search_module(bulwark_mysqlclient REQUIRED IMPORTED_TARGET libmariadb mariadb)
    target_link_libraries(bulwark_deps::mysqlclient INTERFACE PkgConfig::bulwark_mysqlclient)
  endif()
endif()
