# SIPp for the compose lab: the carrier (uas.xml) and the PBX (uac.xml).
# Debian 12 ships SIPp 3.6.1 as `sip-tester`, the version the scenarios and
# their workarounds (sipp-scenarios/README.md, "Pitfalls") were written for.
FROM debian:12
RUN apt-get update \
 && apt-get install -y --no-install-recommends sip-tester \
 && rm -rf /var/lib/apt/lists/*
# SIPp writes its logs and statistics into the working directory by default;
# the compose file names every file under here explicitly.
WORKDIR /var/log/sipp
ENTRYPOINT ["sipp"]
