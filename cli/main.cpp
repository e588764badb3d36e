#include <cstdio>
int main() { std::puts("cafex"); return 0; }
