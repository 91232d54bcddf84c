//! `fake-origin NAME SCRIPT_JSON`: a fake origin as a process, for the
//! Workers tests (run from Node). It prints its URL on one line, serves
//! `GET /__fake/seen` (the requests it got, as JSON), and stops when its
//! standard input closes, so that it never outlives the test that started it.

use std::io::Read;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().context("usage: fake-origin NAME SCRIPT_JSON")?;
    let script: fake_origin::Script =
        serde_json::from_str(&args.next().unwrap_or_else(|| "{}".into())).context("the script is not valid")?;
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let _origin = fake_origin::FakeOrigin::start(&name, script).await?;
        println!("{}", _origin.url());
        std::future::pending::<anyhow::Result<()>>().await
    })
}
