from mnist_mlp.cli import console_main

console_main()
