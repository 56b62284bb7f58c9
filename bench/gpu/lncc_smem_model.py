#!/usr/bin/env python3
"""Shared-memory wavefronts of one step of the CUDA LNCC's fixed-window kernel
(src/backends/cuda/cuda_lncc_fixed.cuh, exact gradient, gm alone), by stage.

A model, not a measurement: it replays the address pattern of every warp
instruction of one step (staging stores, stage B's reads and its publication
of X, C's reads of X and stores of the coefficients, D, E) with the kernel's
geometry (lf_geom), counts a 32-bit access as one wavefront per distinct
address in the busiest bank and a 64-bit access as two half-warps, and prints
the total against the same accesses without bank conflicts.  It leaves out
the 1/n table, the ring and the tree sum; ncu counted ~20 % more at k = 7
(docs/perf.md, thirteenth session).  Keep it in step with the kernel.

usage: python3 bench/gpu/lncc_smem_model.py [R ...]   (window radii, default 2 3)
"""
import sys, collections
def pick_lc(cy, cx, nci, nb):
    for l in range(1,16):
        if (cy - (nci*l if nci*l < cy else cy))*cx <= nb: return l
    return 16
def geom(R, EXACT=True, NQ=3):
    g={}
    OY=16; NT=32*OY; HC=R if EXACT else 0
    IX=32+2*(R+HC); IY=OY+2*(R+HC); CX=32+2*HC; CY=OY+2*HC
    LB=4; NSB=(CX+LB-1)//LB; NB=IY*NSB; NBW=(NB+31)//32*32
    IXP=(NSB*LB+2*R)|1; CXP=CX|1; LD=8; NSD=32//LD; ND=NQ*NSD*CY; DXP=33; NS=2*R+1
    NA=(IX*IY+NT-1)//NT; NTAB=NS**3+1; NFS=1 if EXACT else 2
    W_X=2*2*5*IY*CXP; W_TAB=2*NTAB; W_FS1=4*IY*IXP
    W_CS=NQ*CY*CXP if EXACT else 0; W_DS=2*NQ*CY*DXP if EXACT else 0; W_RING=NS*NQ*NT if EXACT else 0
    W_REST=W_X+W_TAB+W_DS+W_CS+W_RING; SD= W_REST+2*NFS*W_FS1 <= 232448//4
    NCI=(NT-NBW)//CX; SPLIT= EXACT and NQ==5 and not SD; LC0=pick_lc(CY,CX,NCI,0)
    LC= 2 if not EXACT else (pick_lc(CY,CX,NCI,NB) if SPLIT else max(LC0,3))
    NSC= NCI if (SPLIT and NCI < (CY+LC-1)//LC) else (CY+LC-1)//LC; NC=CX*NSC
    return dict(OY=OY,NT=NT,HC=HC,IX=IX,IY=IY,CX=CX,CY=CY,LB=LB,NSB=NSB,NB=NB,NBW=NBW,IXP=IXP,CXP=CXP,LD=LD,NSD=NSD,ND=ND,DXP=DXP,NS=NS,NA=NA,NQ=NQ,SD=SD,LC=LC,NSC=NSC,NC=NC)
def wavefronts(addrs, size):
    # addrs: list of (thread, word address in 4-byte units) active in one warp instruction
    if not addrs: return 0
    if size==8:
        tot=0
        for h in range(2):
            hs=[a for t,a in addrs if t%32//16==h]
            if not hs: continue
            banks=collections.defaultdict(set)
            for a in hs: banks[(a//2)%16].add(a//2)
            tot+=max(len(s) for s in banks.values())
        return tot
    banks=collections.defaultdict(set)
    for t,a in addrs: banks[a%32].add(a)
    return max(len(s) for s in banks.values())
def run(R, IXPX=None, CXPX=None):
    g=geom(R)
    if IXPX: g['IXP']=IXPX
    if CXPX: g['CXP']=CXPX
    IX,IY,IXP,CX,CY,CXP,NT,LB,NB,NBW,LC,NC,DXP,LD,NSD,ND,NQ,NA=[g[k] for k in 'IX IY IXP CX CY CXP NT LB NB NBW LC NC DXP LD NSD ND NQ NA'.split()]
    stats=collections.Counter(); ideal=collections.Counter()
    def acc(stage, lst, size):
        # lst: list of (thread, addr) for all threads; group by warp
        byw=collections.defaultdict(list)
        for t,a in lst: byw[t//32].append((t,a))
        for w,l in byw.items():
            stats[stage]+=wavefronts(l,size)
            ideal[stage]+= (2 if size==8 else 1) if len(l)>16 or size==4 else 1
    # staging stores (doubles), 4 arrays, NA per thread
    for j in range(NA):
        for c in range(4):
            l=[]
            for t in range(NT):
                i=t+j*NT
                if i<IX*IY:
                    iy,ix=divmod(i,IX); l.append((t,2*(c*IY*IXP+iy*IXP+ix)))
            acc('stage st',l,8)
    # B reads: per column index i in 0..2R+LB-1, 4 arrays
    for i in range(2*R+LB):
        for c in range(4):
            l=[(t,2*(c*IY*IXP+(t%IY)*IXP+(t//IY)*LB+i)) for t in range(NB)]
            acc('B ld',l,8)
    # B writes X
    for j in range(LB):
        for q in range(5):
            l=[(t,2*((q*IY+t%IY)*CXP+(t//IY)*LB+j)) for t in range(NB) if (t//IY)*LB+j<CX]
            acc('B st',l,8)
    # C reads: rows 0..2R+LC-1 (window init + running), 5 q
    for i in range(2*R+LC):
        for q in range(5):
            l=[]
            for t in range(NBW,NBW+NC):
                tc=t-NBW; ci=tc%CX; cy0=tc//CX*LC
                if cy0+max(0,i-2*R)<CY: l.append((t,2*((q*IY+cy0+i)*CXP+ci)))
            acc('C ld',l,8)
    # C writes cs (float)
    for j in range(LC):
        for q in range(NQ):
            l=[]
            for t in range(NBW,NBW+NC):
                tc=t-NBW; ci=tc%CX; cy0=tc//CX*LC
                if cy0+j<CY: l.append((t,(q*CY+cy0+j)*CXP+ci))
            acc('C st',l,4)
    # D reads cs float: i in 0..2R+LD-1
    for i in range(2*R+LD):
        l=[]
        for t in range(ND):
            y=t%CY; rest=t//CY; sd=rest%NSD; q=rest//NSD
            l.append((t,(q*CY+y)*CXP+sd*LD+i))
        acc('D ld',l,4)
    for j in range(LD):
        l=[]
        for t in range(ND):
            y=t%CY; rest=t//CY; sd=rest%NSD; q=rest//NSD
            l.append((t,2*((q*CY+y)*DXP+sd*LD+j)))
        acc('D st',l,8)
    # E reads ds
    for q in range(NQ):
        for i in range(2*R+1):
            l=[(t,2*((q*CY+(t>>5)+i)*DXP+(t&31))) for t in range(NT)]
            acc('E ld',l,8)
    return g, stats, ideal
for R in ([int(a) for a in sys.argv[1:]] or [2, 3]):
    g,s,i=run(R)
    tot=sum(s.values()); ti=sum(i.values())
    print("R=%d IY=%d IXP=%d CX=%d CXP=%d LC=%d NB=%d NC=%d SD=%d: wavefronts/step %d (no-conflict %d)"%(R,g['IY'],g['IXP'],g['CX'],g['CXP'],g['LC'],g['NB'],g['NC'],g['SD'],tot,ti))
    for k in s: print("   %-10s %6d %6d"%(k,s[k],i[k]))
