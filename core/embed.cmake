# Turns a file into a C source holding its bytes: cmake -DIN=... -DOUT=... -DNAME=... -P embed.cmake
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
file(WRITE ${OUT} "/* Generated from ${IN} by core/embed.cmake. */\nconst unsigned char ${NAME}[] = {${body}0};\nconst unsigned long ${NAME}_len = ${bytes};\n")
