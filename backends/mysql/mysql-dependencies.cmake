# Finds the MySQL client library (MariaDB Connector/C or Oracle libmysqlclient) as the
# imported target PkgConfig::bulwark_mysqlclient. Used by the build and by find_package(bulwark).
include(CMakeFindDependencyMacro)
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::bulwark_mysqlclient)
  pkg_search_module(bulwark_mysqlclient REQUIRED IMPORTED_TARGET GLOBAL libmariadb mysqlclient mariadb)
endif()
