// order-service: see services.cpp and ../README.md ("Real mode").
#include "services.hpp"

int main(int argc, char** argv) { return checkout::run_order_service(argc, argv); }
